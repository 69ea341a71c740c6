"""KFP component: the quality gate. Writes the blessing (BLESSED/NOT_BLESSED with every check), the
artifact the canary step takes and verifies before it moves any traffic."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented(
    "Gate the candidate: thresholds, regressions vs the champion, infra validation on a real model server; writes "
    "BLESSED or NOT_BLESSED with its reasons",
    ("Output",),
    report="The gate's checks and reasons (Markdown)",
    Output="True when the candidate is BLESSED",
)
def gate_op(
    store: str,
    model_name: str,
    evaluation: Input[Artifact],
    test: Input[Dataset],
    gate_config: dict,
    blessing: Output[Artifact],
    report: Output[Markdown],
) -> bool:
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.evaluate.artifacts import Evaluation
    from components.stages.gate.config import GateConfig
    from components.stages.gate.core import gate_markdown
    from components.stages.gate.executor import gate_candidate
    from components.stages.split.executor import read_split

    result = gate_candidate(open_store(store), model_name, Evaluation.read(evaluation.path), read_split(test.path),
                            GateConfig.model_validate(gate_config))
    result.write(blessing.path)
    blessing.metadata.update({"decision": result.decision, "blessed": result.blessed, "model": model_name,
                              "candidate": result.candidate})
    with open(report.path, "w") as handle:
        handle.write(gate_markdown(result))
    StepLog("gate")(("BLESSED" if result.blessed else "NOT BLESSED: " + "; ".join(result.reasons)),
                    level="info" if result.blessed else "warning", model=model_name,
                    candidate=result.candidate, decision=result.decision)
    return result.blessed
