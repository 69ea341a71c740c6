"""KFP components for Alert & Stop: `notify_op` runs under dsl.If when the gate does not bless
or the release ends without promotion; `exit_notify_op` is the pipeline's exit handler and
reports a failed run. Each posts the structured notification to the webhook (locally from
config, on the cluster from the Secret as CONVEYOR_NOTIFY_URL), records a Kubernetes Event on
its own pod when it runs in one, and writes the notification as its output for the run summary."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.cluster.images import COMPONENT_IMAGE
from components.composition.parameters import documented


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented("Alert & Stop: notify the configured webhook (and record a Kubernetes Event) that the run stopped")
def notify_op(event: str, run_id: str, model_name: str, notify_config: dict, record: Input[Artifact],
              notification: Output[Artifact]):
    import json

    from components.cluster.kube import in_a_pod, record_pod_event
    from components.common.logs import StepLog
    from components.stages.notify.executor import EVENT_REASONS, deliver

    with open(record.path) as handle:
        source = json.load(handle)
    result = deliver(event, run_id, model_name, source, notify_config)
    if in_a_pod():  # `kubectl get events` shows the stop on this step's own pod
        result["delivery"]["event"] = record_pod_event(EVENT_REASONS[event], result["summary"], "conveyor-notify")
    with open(notification.path, "w") as handle:
        json.dump(result, handle, indent=2)
    notification.metadata.update({"event": event, "delivered": result["delivery"].get("delivered", False)})
    StepLog("notify", run_id)(result["summary"], level="warning", event_kind=event,
                              delivered=result["delivery"].get("delivered", False))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
@documented("On the pipeline's exit: notify when the run failed", ("Output",), Output="The pipeline's final state")
def exit_notify_op(status: dsl.PipelineTaskFinalStatus, run_id: str, model_name: str, notify_config: dict) -> str:
    from components.cluster.kube import in_a_pod, record_pod_event
    from components.common.logs import StepLog
    from components.stages.notify.executor import EVENT_REASONS, deliver_failure

    result = deliver_failure(run_id, model_name, status.state, status.error_message, notify_config)
    if result and in_a_pod():
        record_pod_event(EVENT_REASONS["failed"], result["summary"], "conveyor-notify")
    StepLog("exit", run_id)(f"pipeline {status.state}" + (f": {result['summary']}" if result else ""),
                            level="info" if status.state == "SUCCEEDED" else "error", state=status.state)
    return status.state
