"""KFP component: the quality gate. Writes the BLESSED/NOT_BLESSED decision with every check."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def gate_op(
    store: str,
    model_name: str,
    evaluation: Input[Artifact],
    gate_config: dict,
    decision: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    import json

    from components.common.storage import open_store
    from components.gate.config import GateConfig
    from components.gate.core import gate_candidate, gate_markdown

    with open(evaluation.path) as handle:
        evaluated = json.load(handle)
    result = gate_candidate(open_store(store), model_name, evaluated, GateConfig.model_validate(gate_config))
    with open(decision.path, "w") as handle:
        json.dump(result, handle, indent=2)
    decision.metadata.update({"blessed": result["blessed"], "candidate": result["candidate"]})
    with open(report.path, "w") as handle:
        handle.write(gate_markdown(result))
    if not result["blessed"]:
        print("NOT BLESSED: " + "; ".join(result["reasons"]))
    return result["blessed"]
