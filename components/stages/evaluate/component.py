"""KFP component: score the candidate and the current champion on the same test rows: the test
split the split step wrote."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented("Evaluate the candidate and the champion on the same held-out test split")
def evaluate_op(
    store: str,
    model_name: str,
    candidate: str,
    test: Input[Dataset],
    evaluate_config: dict,
    evaluation: Output[Artifact],
    confusion: Output[ClassificationMetrics],
    scalars: Output[Metrics],
):

    from components.common.config import validate_section
    from components.common.logs import StepLog
    from components.common.storage import open_store
    from components.stages.evaluate.config import EvaluateConfig
    from components.stages.evaluate.executor import evaluate_candidate
    from components.stages.split.executor import read_split

    settings = validate_section(EvaluateConfig, evaluate_config, "evaluate")
    result = evaluate_candidate(open_store(store), model_name, candidate, read_split(test.path), test.metadata,
                                cv_folds=settings.cv_folds)
    result.write(evaluation.path)
    cand, champion = result.candidate, result.champion
    StepLog("evaluate")(f"candidate {candidate}: accuracy {cand.accuracy:.4f}, macro F1 {cand.macro_f1:.4f}"
                        + (f"; champion accuracy {champion.accuracy:.4f}" if champion else "; no champion yet"),
                        model=model_name, candidate=candidate, accuracy=cand.accuracy, macro_f1=cand.macro_f1,
                        champion_accuracy=champion.accuracy if champion else None)
    confusion.log_confusion_matrix(cand.labels, cand.confusion_matrix)
    for key in ("accuracy", "macro_f1", "ece", "batch64_latency_ms"):
        scalars.log_metric(f"candidate_{key}", getattr(cand, key))
        if champion:
            scalars.log_metric(f"champion_{key}", getattr(champion, key))
    if cand.cv:
        for key in ("mean", "std", "lower"):
            scalars.log_metric(f"candidate_cv_accuracy_{key}", cand.cv["accuracy"][key])
