"""The deployment files pass every validator this machine has (infra/validate_deploy.py, `make validate-deploy`),
and each validator catches a broken copy (so none of them passes by not looking)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from infra import validate_deploy as v


def run(check, *args):
    try:
        return check(*args)
    except v.ToolMissing as missing:  # only when the `test` extra or the Debian package is not installed
        pytest.skip(f"{missing} is not installed")


@pytest.mark.parametrize("name", list(v.CHECKS))
def test_the_deployment_files_pass(name):
    assert run(v.CHECKS[name]) == []


def test_hadolint_catches_a_careless_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install curl\nCMD python app.py\n")
    problems = run(v.hadolint, bad)
    assert any("DL3007" in p for p in problems)  # :latest
    assert any("DL3015" in p or "DL3008" in p for p in problems)  # unpinned, recommends


def test_compose_validators_catch_an_unknown_key(tmp_path):
    document = yaml.safe_load(v.COMPOSE.read_text())
    document["services"]["gateway"]["restart_policy"] = "always"  # a Swarm-ism at the wrong level
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    assert run(v.compose_schema, broken)
    assert run(v.compose_config, broken)


def test_kubernetes_schemas_catch_a_misspelt_field(tmp_path):
    folder = tmp_path / "k8s"
    shutil.copytree(v.K8S, folder)
    manifest = folder / "gateway.yaml"
    manifest.write_text(manifest.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem", 1))
    problems = run(v.kubernetes_schemas, folder)
    assert any("readOnlyRootFilesytem" in p for p in problems)


def test_kubernetes_policies_catch_root_a_missing_budget_and_a_bad_trigger(tmp_path):
    folder = tmp_path / "k8s"
    shutil.copytree(v.K8S, folder)
    workers = list(yaml.safe_load_all((folder / "workers.yaml").read_text()))
    workers = [d for d in workers if not (d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "relay")]
    workers[0]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
    (folder / "workers.yaml").write_text(yaml.safe_dump_all(workers))
    keda = list(yaml.safe_load_all((folder / "keda.yaml").read_text()))
    keda[-1]["spec"]["triggers"][0]["metadata"]["query"] = "sum(gateway_queue_length)"
    keda[1]["spec"]["triggers"][0]["metadata"]["listName"] = "rq:queue:nowhere"
    (folder / "keda.yaml").write_text(yaml.safe_dump_all(keda))
    config = list(yaml.safe_load_all((folder / "config.yaml").read_text()))
    config[0]["data"]["GATEWAY_S3_BUKET"] = "typo"
    config[0]["data"]["GATEWAY_SMTP_PASSWORD"] = "in-plain-sight"
    (folder / "config.yaml").write_text(yaml.safe_dump_all(config))

    problems = "\n".join(run(v.kubernetes_policies, folder))
    assert "Deployment/worker-review: the pod must run as non-root" in problems
    assert "Deployment/relay has no PodDisruptionBudget" in problems
    assert "gateway_queue_length, which /metrics does not export" in problems
    assert "rq:queue:nowhere is not an RQ queue list" in problems
    assert "GATEWAY_S3_BUKET is not a gateway setting" in problems
    assert "GATEWAY_SMTP_PASSWORD looks secret" in problems


def test_compose_policies_catch_a_wrong_worker_flag_and_a_literal_secret(tmp_path):
    document = yaml.safe_load(v.COMPOSE.read_text())
    document["services"]["worker-review"]["command"] = ["gateway", "worker", "--reviews"]
    document["services"]["gateway"]["environment"]["GATEWAY_SECRET_KEY"] = "x" * 40
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    problems = "\n".join(run(v.compose_policies, broken))
    assert "`gateway worker` has no option --reviews" in problems
    assert "GATEWAY_SECRET_KEY has a literal value" in problems


def test_the_dashboard_check_catches_an_unknown_metric(tmp_path):
    dashboard = json.loads((v.GRAFANA / "records-gateway.json").read_text())
    dashboard["panels"][0]["targets"][0]["expr"] = "sum(rate(gateway_requests_total[5m]))"
    (tmp_path / "broken.json").write_text(json.dumps(dashboard))
    (tmp_path / "not-json.json").write_text("{")
    problems = "\n".join(run(v.grafana_dashboards, tmp_path))
    assert "gateway_requests_total, which /metrics does not export" in problems
    assert "not-json.json: not JSON" in problems
