"""KFP component: register a training run's model as an immutable version and move an alias."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Register the trained model as a new version under model_name with an alias",
    ("version", "model_uri"),
    version="The registered model version",
)
def register_op(
    store: str,
    model_name: str,
    run_record: Input[Artifact],
    model: Output[Model],
    alias: str = "candidate",
) -> NamedTuple("RegisterOutputs", version=str, model_uri=str):
    import json
    from collections import namedtuple

    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.registry.store import register_run

    with open(run_record.path) as handle:
        record = json.load(handle)
    card = register_run(open_store(store), model_name, record, alias)
    with open(model.path, "w") as handle:
        json.dump(card, handle, indent=2)
    model.metadata.update({"name": model_name, "version": card["version"], "alias": alias})
    StepLog("register", record.get("run_id", ""))(f"registered {model_name} version {card['version']} as {alias}",
                                                  model=model_name, version=card["version"], alias=alias)
    return namedtuple("RegisterOutputs", ["version", "model_uri"])(card["version"], card["uri"])
