"""What Katib does with a trial, done here without Katib: take the trial template from an Experiment,
fill `${trialParameters.*}` from a point of the feasible space (and `${trialSpec.Name}`), rewrite the
primary container as the metrics-collector webhook does, and read the metrics file with the StdOut
collector's rules.

Ported from Katib v0.19:
- the rewrite: pkg/webhook/v1beta1/pod/utils.go (`wrapWorkerContainer`, `getContainerCommand`,
  `getEarlyStoppingCommand`, `getMarkCompletedCommand`, `mutateMetricsCollectorVolume`) and
  inject_webhook.go (only the pod matching `primaryPodLabels` is mutated; the StdOut collector's
  file is common.DefaultFilePath);
- the parsing: pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go
  (parseLogsInTextFormat, newObservationLog), with the default filter of
  pkg/metricscollector/v1beta1/common/const.go.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

# common.DefaultFilter
DEFAULT_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")
UNAVAILABLE = "unavailable"  # consts.UnavailableMetricValue
METRICS_FILE = "/var/log/katib/metrics.log"  # common.DefaultFilePath (StdOut collector)
METRICS_VOLUME = "metrics-volume"  # common.MetricsVolume
TRAINING_COMPLETED = "completed"  # mccommon.TrainingCompleted
TRAINING_EARLY_STOPPED = "early-stopped"  # mccommon.TrainingEarlyStopped
ZERO_TIME = "0001-01-01T00:00:00Z"  # time.Time{}.UTC().Format(time.RFC3339)
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class MetricLog:
    timestamp: str
    name: str
    value: str


def parse_stdout(text: str, metrics: list[str]) -> list[MetricLog]:
    """The observation log Katib would store for this output; metrics[0] is the objective."""
    logs: list[MetricLog] = []
    for line in text.split("\n"):
        if not any(m in line for m in metrics):
            continue
        stamp = ZERO_TIME
        head, sep, _ = line.partition(" ")
        if sep and RFC3339NANO.match(head) and _parses(head):
            stamp = head
        for match in DEFAULT_FILTER.finditer(line):
            name, value = match.group(1).strip(), match.group(2).strip()
            if name in metrics:
                logs.append(MetricLog(stamp, name, value))
    if not any(log.name == metrics[0] for log in logs):
        return [MetricLog(ZERO_TIME, metrics[0], UNAVAILABLE)]
    return logs


def _parses(stamp: str) -> bool:
    try:
        dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def feasible_point(experiment: dict[str, Any], pick: str = "min") -> dict[str, str]:
    """One assignment per parameter, as the suggestion service would send it (strings)."""
    out = {}
    for p in experiment["spec"]["parameters"]:
        space = p["feasibleSpace"]
        if "list" in space:
            out[p["name"]] = space["list"][0 if pick == "min" else -1]
        else:
            out[p["name"]] = space["min"] if pick == "min" else space["max"]
    return out


def trial_run_spec(experiment: dict[str, Any], assignments: dict[str, str], trial_name: str) -> dict[str, Any]:
    """The trial's Job / PyTorchJob as Katib's trial controller would create it."""
    template = experiment["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for param in template["trialParameters"]:
        ref = param["reference"]
        if ref == "${trialSpec.Name}":
            value = trial_name
        elif ref == "${trialSpec.Namespace}":
            value = experiment["metadata"].get("namespace", "default")
        else:
            value = assignments[ref]
        # JSON-escape the value: it lands inside a JSON string
        text = text.replace(f"${{trialParameters.{param['name']}}}", json.dumps(value)[1:-1])
    if "${trialParameters." in text:
        raise AssertionError(f"unsubstituted trial parameters left in {text[:200]}")
    return json.loads(text)


def trainjob_node_pod(run_spec: dict[str, Any], node_rank: int = 0, master_addr: str = "127.0.0.1",
                      master_port: int = 29500) -> dict[str, Any]:
    """A TrainJob node's pod template as the torch ClusterTrainingRuntime renders it: the runtime's
    "node" container with the TrainJob's trainer image, command, env and resources, the torch
    plugin's PET_* topology, and the TrainJob's runtime patch (node selector, security contexts)."""
    trainer = run_spec["spec"]["trainer"]
    patch = run_spec["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = dict(patch["template"]["spec"]["template"]["spec"])
    (container_patch,) = pod_spec.pop("containers")
    topology = {"PET_NNODES": trainer["numNodes"], "PET_NPROC_PER_NODE": trainer["numProcPerNode"],
                "PET_NODE_RANK": node_rank, "PET_MASTER_ADDR": master_addr, "PET_MASTER_PORT": master_port}
    container = {"name": "node", "image": trainer["image"], "command": trainer["command"],
                 "env": [*trainer.get("env", []), *({"name": k, "value": str(v)} for k, v in topology.items())],
                 "resources": trainer.get("resourcesPerNode", {}),
                 "securityContext": container_patch.get("securityContext", {})}
    metadata = dict(patch["template"]["spec"]["template"].get("metadata", {}))
    # JobSet and the Job controller label every node pod; Katib finds rank 0 by these labels
    metadata["labels"] = {**metadata.get("labels", {}), "jobset.sigs.k8s.io/replicatedjob-name": "node",
                          "batch.kubernetes.io/job-completion-index": str(node_rank)}
    return {"metadata": metadata, "spec": {**pod_spec, "containers": [container], "restartPolicy": "Never"}}


def pytorchjob_pod(run_spec: dict[str, Any], role: str = "Master") -> dict[str, Any]:
    """A PyTorchJob replica's pod with the labels the training operator gives it (Katib's primary
    pod labels select the master by `training.kubeflow.org/job-role`)."""
    template = run_spec["spec"]["pytorchReplicaSpecs"][role]["template"]
    metadata = dict(template.get("metadata") or {})
    labels = {**(metadata.get("labels") or {}), "training.kubeflow.org/replica-type": role.lower()}
    if role == "Master":
        labels["training.kubeflow.org/job-role"] = "master"
    return {**template, "metadata": {**metadata, "labels": labels}}


def primary_container(experiment: dict[str, Any], run_spec: dict[str, Any]) -> dict[str, Any]:
    name = experiment["spec"]["trialTemplate"]["primaryContainerName"]
    if run_spec["kind"] == "Job":
        pods = [run_spec["spec"]["template"]]
    elif run_spec["kind"] == "TrainJob":
        pods = [trainjob_node_pod(run_spec)]
    else:
        pods = [r["template"] for r in run_spec["spec"]["pytorchReplicaSpecs"].values()]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            if container["name"] == name:
                return container
    raise AssertionError(f"no container named {name} in the trial spec")


def metric_names(experiment: dict[str, Any]) -> list[str]:
    objective = experiment["spec"]["objective"]
    return [objective["objectiveMetricName"], *(objective.get("additionalMetricNames") or [])]


def wrap_worker_container(container: dict[str, Any], *, collector: str = "StdOut", metrics_file: str = METRICS_FILE,
                          early_stopping: bool = False) -> dict[str, Any]:
    """The primary container as Katib's pod webhook leaves it (wrapWorkerContainer): its command and
    args joined with spaces into one `sh -c` script that redirects the output to the metrics file
    (StdOut collector) and marks completion with `echo completed > DIR/$$$$.pid` (the kubelet turns
    `$$` into `$`, so the shell writes its own pid); the metrics volume mounted at DIR."""
    # getContainerCommand: the container's command, else the image's ENTRYPOINT read from the
    # registry (not reproduced: every Conveyor trial sets command); then args, else the image's CMD.
    if not container.get("command"):
        raise AssertionError(f"container {container.get('name')}: no command; Katib would read the image's "
                             "ENTRYPOINT from the registry, which this port does not reproduce")
    args = [*container["command"], *(container.get("args") or [])]
    command = ["sh", "-c"]
    if args[0] in ("sh", "bash") and len(args) > 1 and args[1] == "-c":  # already a shell: not injected
        command, args = args[:2], args[2:]
    if collector == "StdOut":
        args.append(f"1>{metrics_file} 2>&1")
    metrics_dir = posixpath.dirname(metrics_file)  # pathKind FileKind
    if early_stopping:
        pid_file, pid_condition = posixpath.join(metrics_dir, "$$$$.pid"), posixpath.join(metrics_dir, "$$.pid")
        args += ["||", f"if test -f {pid_file} && [ $(head -n 1 {pid_condition}) = {TRAINING_EARLY_STOPPED} ]; "
                       "then echo Training Container was Early Stopped; "
                       "else echo Training Container was Failed; exit 1; fi"]
    args += ["&&", f"echo {TRAINING_COMPLETED} > {posixpath.join(metrics_dir, '$$$$.pid')}"]
    mounts = [*(container.get("volumeMounts") or []), {"name": METRICS_VOLUME, "mountPath": metrics_dir}]
    return {**container, "command": command, "args": [" ".join(args)], "volumeMounts": mounts}


def wrap_primary_pod(experiment: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """inject_webhook.go for one pod of the trial: a pod whose labels match `primaryPodLabels` (every
    pod when none are set) gets the metrics volume and its primary container wrapped; others pass."""
    template = experiment["spec"]["trialTemplate"]
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (template.get("primaryPodLabels") or {}).items()):
        return pod
    spec = dict(pod["spec"])
    early = experiment["spec"].get("earlyStopping") is not None
    collector = ((experiment["spec"].get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")
    spec["containers"] = [wrap_worker_container(c, collector=collector, early_stopping=early)
                          if c["name"] == template["primaryContainerName"] else c for c in spec["containers"]]
    spec["volumes"] = [*(spec.get("volumes") or []), {"name": METRICS_VOLUME, "emptyDir": {}}]
    return {**pod, "spec": spec}


def completion_marks(metrics_dir) -> list[str]:
    """What the wrapped command left in its `<pid>.pid` files (the collector waits for them)."""
    from pathlib import Path

    return [p.read_text().strip() for p in sorted(Path(metrics_dir).glob("*.pid"))]
