"""KFP component: score the candidate and the current champion on the same test rows: the test
split the split step wrote."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Output

from components.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate_op(
    store: str,
    model_name: str,
    candidate: str,
    test: Input[Dataset],
    evaluation: Output[Artifact],
    confusion: Output[ClassificationMetrics],
    scalars: Output[Metrics],
):
    import json

    from components.common.storage import open_store
    from components.evaluate.executor import evaluate_candidate, read_test_split

    result = evaluate_candidate(open_store(store), model_name, candidate, read_test_split(test.path), test.metadata)
    with open(evaluation.path, "w") as handle:
        json.dump(result, handle, indent=2)
    cand = result["candidate"]
    confusion.log_confusion_matrix(cand["labels"], cand["confusion_matrix"])
    for key in ("accuracy", "macro_f1", "ece", "batch64_latency_ms"):
        scalars.log_metric(f"candidate_{key}", cand[key])
        if result["champion"]:
            scalars.log_metric(f"champion_{key}", result["champion"][key])
