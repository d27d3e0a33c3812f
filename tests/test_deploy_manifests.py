"""The deployment files validate: Docker and Kubernetes do not run here, so the compose file is checked
against the Compose Specification's JSON Schema (the copy check-jsonschema ships) and the Kubernetes
manifests against the API schemas kubernetes-validate ships (offline, strict: unknown fields fail).

A schema only says a file is well formed. The rest is checked here against the code it deploys:
images and Dockerfile stages exist, every GRIDWATCH_* variable is a real server setting and the
settings validate, volumes and Secrets referenced are declared, Services and PodDisruptionBudgets
select real pods, probes hit the server's real health routes, and the compose file's broker and edge
files are the ones `gridwatch broker init` and the image's entry point really write.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gridwatch.edge.config import load_config
from gridwatch.server.settings import ServerSettings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE_DIR = DEPLOY / "docker"
ENTRYPOINT = DOCKERFILE_DIR / "entrypoint.sh"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes minor still commonly run by districts' providers; every API used exists there.
K8S_VERSION = "1.30.0"
SETTINGS = set(ServerSettings.model_fields)
# Variables the image's entry point reads itself (not server settings): found in the script, not listed here.
ENTRYPOINT_VARS = set(re.findall(r"GRIDWATCH_[A-Z_]+", ENTRYPOINT.read_text()))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def setting_name(variable: str) -> str:
    return variable.removeprefix("GRIDWATCH_").lower()


def check_server_variables(env: dict[str, str], where: str) -> None:
    """Every GRIDWATCH_* variable a server gets is a setting (or the entry point's), and together they validate."""
    unknown = [name for name in env if name.startswith("GRIDWATCH_") and name not in ENTRYPOINT_VARS
               and setting_name(name) not in SETTINGS]
    assert not unknown, f"{where}: not server settings: {unknown}"
    values = {setting_name(k): v for k, v in env.items() if k.startswith("GRIDWATCH_") and k not in ENTRYPOINT_VARS}
    ServerSettings(**values)  # raises a ValidationError naming the field


# -- compose --------------------------------------------------------------------------------------------------


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # The validator is not a formality: a misspelt key in a service is refused.
    broken = compose()
    broken["services"]["server"]["helthcheck"] = broken["services"]["server"].pop("healthcheck")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    result = check_compose_schema(tmp_path / "compose.yaml")
    assert result.returncode != 0 and "helthcheck" in result.stdout + result.stderr


def dockerfile_stages(path: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", path.read_text(), flags=re.MULTILINE | re.IGNORECASE))


def test_compose_services_images_volumes_and_dependencies_exist() -> None:
    spec = compose()
    services = spec["services"]
    assert {"mosquitto", "postgres", "server", "edge"} <= set(services)
    declared_volumes = set(spec.get("volumes", {}))
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        build = service.get("build")
        if build is not None:
            context = (COMPOSE.parent / build["context"]).resolve()
            dockerfile = context / build["dockerfile"]
            assert dockerfile.is_file(), f"{name}: no Dockerfile {dockerfile}"
            assert build["target"] in dockerfile_stages(dockerfile), f"{name}: no stage {build['target']}"
            for copied in re.findall(r"^COPY\s+(\S+)\s", dockerfile.read_text(), flags=re.MULTILINE):
                assert (context / copied).exists(), f"{dockerfile}: COPY {copied}: not in the build context"
            extras = set(tomllib.loads((context / "pyproject.toml").read_text())["project"]["optional-dependencies"])
            for installed in re.findall(r'pip install "\.\[([a-z,]+)\]"', dockerfile.read_text()):
                assert set(installed.split(",")) <= extras, f"{dockerfile}: unknown extra in [{installed}]"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name}: depends on unknown service {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("${"):
                continue  # a host path the operator sets in .env (models, samples)
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
        if service.get("restart") != "no":  # long-running services report their health
            assert "healthcheck" in service, f"{name}: no healthcheck"


def test_compose_variables_are_all_in_env_example() -> None:
    """What `docker compose` interpolates from .env is what env.example tells the operator to set."""
    lines = [line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("$$", "")  # $$ is a literal dollar for the container, not compose's
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = COMPOSE.parent / "env.example"
    offered = set(re.findall(r"^([A-Z_]+)=", example.read_text(), flags=re.MULTILINE))
    assert used == offered, f"in compose.yaml only: {used - offered}; in env.example only: {offered - used}"


def test_compose_server_settings_port_and_probe_agree(site: Path) -> None:
    server = compose()["services"]["server"]
    env = {k: str(v) for k, v in server["environment"].items()}
    # Compose interpolation: ${VAR:?...} and ${VAR:-default} as an operator's .env would fill them; the
    # container's /site is the directory broker-init wrote (the settings check the TLS files exist).
    env = {k: re.sub(r"\$\{[A-Z_]+(?::[-?][^}]*)?\}", "secret", v).replace("$$", "$") for k, v in env.items()}
    env = {k: str(site) + v.removeprefix("/site") if v.startswith("/site/") else v for k, v in env.items()}
    env["GRIDWATCH_MQTT_URL"] = env["GRIDWATCH_MQTT_URL"].replace("${MQTT_PASSWORD}", "secret")
    check_server_variables(env, "compose server")
    port = env["GRIDWATCH_PORT"]
    assert f"{port}:{port}" in server["ports"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(server["healthcheck"]["test"])
    assert env["GRIDWATCH_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in \
        env["GRIDWATCH_DATABASE_URL"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What compose's broker-init writes into the `site` volume, made by the same commands here."""
    spec = compose()
    init = spec["services"]["broker-init"]
    directory = tmp_path_factory.mktemp("site")
    script = init["command"][0].replace("$$", "$").replace("/site", str(directory))
    script = "\n".join(line for line in script.splitlines() if not line.startswith("chown"))  # needs root
    env = {**os.environ, "SITE_ID": "compound-01", "NODE_ID": "lobby-3",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = script.replace("--user mosquitto", f"--user {os.environ.get('USER', 'root')}")
    result = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def test_compose_broker_and_server_files_are_the_ones_broker_init_writes(site: Path) -> None:
    services = compose()["services"]
    mosquitto_conf = services["mosquitto"]["command"][-1]
    assert (site / Path(mosquitto_conf).relative_to("/site")).is_file()
    conf = (site / "broker" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 8883$", conf, flags=re.MULTILINE)  # the port the healthcheck and edge use
    assert "8883" in " ".join(services["mosquitto"]["healthcheck"]["test"])
    for name, value in services["server"]["environment"].items():
        if name.endswith("_FILE"):
            assert (site / Path(value).relative_to("/site")).is_file(), f"server {name}: {value} is not written"


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *command], env={"PATH": path, **env},
                           capture_output=True, text=True, timeout=60)


def test_entrypoint_puts_the_broker_password_into_the_server_url(site: Path) -> None:
    password_file = site / "clients" / "server" / "password"
    result = run_entrypoint({"GRIDWATCH_MQTT_PASSWORD_FILE": str(password_file),
                             "GRIDWATCH_MQTT_URL": "mqtts://server:${MQTT_PASSWORD}@mosquitto:8883"},
                            "sh", "-c", 'printf %s "$GRIDWATCH_MQTT_URL"')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"mqtts://server:{password_file.read_text().strip()}@mosquitto:8883"
    missing = run_entrypoint({"GRIDWATCH_MQTT_PASSWORD_FILE": str(site / "nope")}, "true")
    assert missing.returncode != 0 and "GRIDWATCH_MQTT_PASSWORD_FILE" in missing.stderr


def test_compose_edge_config_renders_and_validates(site: Path, tmp_path: Path) -> None:
    edge = compose()["services"]["edge"]
    env = {k: re.sub(r"\$\{([A-Z_]+):-([^}]*)\}", r"\2", str(v)) for k, v in edge["environment"].items()}
    env["CAMERA_SOURCE"] = "rtsp://viewer:pw@192.0.2.10:554/stream2"
    assert edge["command"][-1] == env["GRIDWATCH_EDGE_CONFIG"]  # edge run reads what the entry point wrote
    template = next(m.split(":")[0] for m in edge["volumes"] if m.split(":")[1] == env["GRIDWATCH_EDGE_TEMPLATE"])
    # The container's /site is the site volume; here it is the directory broker-init wrote.
    rendered = tmp_path / "edge.yaml"
    env.update({"GRIDWATCH_EDGE_TEMPLATE": str(COMPOSE.parent / template), "GRIDWATCH_EDGE_CONFIG": str(rendered),
                "GRIDWATCH_MQTT_PASSWORD_FILE": env["GRIDWATCH_MQTT_PASSWORD_FILE"].replace("/site", str(site))})
    result = run_entrypoint(env, "true")
    assert result.returncode == 0, result.stderr
    rendered.write_text(rendered.read_text().replace("/site/", f"{site}/"))
    config = load_config(rendered)  # the edge's own validation, TLS files checked to exist
    assert (config.site_id, config.node_id) == ("compound-01", "lobby-3")
    assert config.mqtt.url.startswith("mqtts://lobby-3%40compound-01:") and "@mosquitto:8883" in config.mqtt.url
    # A variable the template needs but the environment lacks is named.
    del env["CAMERA_ID"]
    result = run_entrypoint(env, "true")
    assert result.returncode != 0 and "CAMERA_ID" in result.stderr


# -- Kubernetes -----------------------------------------------------------------------------------------------


def k8s_documents(include_examples: bool = True) -> list[tuple[str, dict[str, Any]]]:
    files = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    if not include_examples:
        files = [p for p in files if ".example." not in p.name]
    return [(p.name, doc) for p in files for doc in yaml.safe_load_all(p.read_text()) if doc]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml" and ".example." not in p.name}
    assert listed == on_disk


def test_kubernetes_manifests_validate_strictly() -> None:
    documents = k8s_documents()
    assert len(documents) >= 10
    for filename, doc in documents:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{filename}: {doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")
    # Strict means strict: a misplaced field is refused.
    deployment = copy.deepcopy(next(d for _, d in documents if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def workloads(documents: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [d for _, d in documents if d["kind"] in ("Deployment", "StatefulSet")]


def selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_kubernetes_workloads_have_probes_resources_and_replicas() -> None:
    documents = k8s_documents(include_examples=False)
    by_name = {d["metadata"]["name"]: d for d in workloads(documents)}
    assert by_name["gridwatch-server"]["spec"]["replicas"] >= 2
    assert by_name["rabbitmq"]["spec"]["replicas"] == 3
    for workload in by_name.values():
        pod = workload["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind} incomplete"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{where}: no {probe}"
                action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                if action is not None and isinstance(action["port"], str):
                    assert action["port"] in ports, f"{where}: {probe} on unknown port {action['port']}"
    services = {d["metadata"]["name"]: d for _, d in documents if d["kind"] == "Service"}
    assert services[by_name["rabbitmq"]["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_kubernetes_services_and_budgets_select_real_pods() -> None:
    documents = k8s_documents(include_examples=False)
    pods = workloads(documents)
    for _, doc in documents:
        if doc["kind"] == "Service":
            matched = [w for w in pods if selects(doc["spec"]["selector"], w)]
            assert matched, f"Service {doc['metadata']['name']} selects no pods"
            ports = {p["name"] for w in matched for c in w["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for port in doc["spec"]["ports"]:
                target = port.get("targetPort", port["name"])
                assert not isinstance(target, str) or target in ports, f"Service {doc['metadata']['name']}: {target}"
        if doc["kind"] == "PodDisruptionBudget":
            assert any(selects(doc["spec"]["selector"]["matchLabels"], w) for w in pods), doc["metadata"]["name"]


def test_kubernetes_config_and_secret_references_resolve() -> None:
    documents = k8s_documents()
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for _, d in documents if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for _, d in documents if d["kind"] == "Secret"}
    claims = {d["metadata"]["name"] for _, d in documents if d["kind"] == "PersistentVolumeClaim"}
    for workload in workloads(documents):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                secret = secrets[volume["secret"]["secretName"]]
                assert all(item["key"] in secret for item in volume["secret"].get("items", []))
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for container in pod.get("initContainers", []) + pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in secrets[ref["name"]], f"{var['name']}: no key {ref['key']}"


def expanded_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env in order, $(VAR) expanded
    only from variables defined before it (a later or unknown one would stay a literal "$(VAR)")."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            value = var["value"]
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value):
                assert ref in env, f"{var['name']}: $({ref}) is not defined before it"
                value = value.replace(f"$({ref})", env[ref])
            env[var["name"]] = value
        else:
            env[var["name"]] = "from-" + var["name"].lower().replace("_", "-")
    return env


def test_kubernetes_server_settings_validate_and_probes_hit_real_routes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gridwatch.server.api.app import create_app

    documents = k8s_documents()
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for _, d in documents if d["kind"] == "ConfigMap"}
    deployment = next(d for _, d in documents if d["kind"] == "Deployment"
                      and d["metadata"]["name"] == "gridwatch-server")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = expanded_env(container, config_maps)
    check_server_variables(env, "k8s gridwatch-server")
    assert env["GRIDWATCH_INGEST_SOURCE"] == "amqp" and env["GRIDWATCH_AMQP_URLS"].count("amqp://") == 3
    assert env["GRIDWATCH_MQTT_CLIENT_ID"] == "from-pod-name"  # one MQTT client id per replica
    port = int(env["GRIDWATCH_PORT"])
    assert {p["containerPort"] for p in container["ports"]} == {port}
    # Asked of a running app: routers mounted with include_router are not listed flat in app.routes.
    with TestClient(create_app(ServerSettings(data_dir=tmp_path), start_ingest=False)) as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert client.get(container[probe]["httpGet"]["path"]).status_code != 404, probe
    project_version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert container["image"].endswith(f":{project_version[1]}")


def test_kubernetes_broker_routes_mqtt_where_the_server_consumes() -> None:
    """RabbitMQ's MQTT plugin publishes into the exchange server/ingest/amqp_source.py binds its queue to."""
    from gridwatch.server.ingest.amqp_source import EXCHANGE

    config = next(d for _, d in k8s_documents()
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rabbitmq-config")
    settings = dict(line.split(" = ", 1) for line in config["data"]["rabbitmq.conf"].splitlines()
                    if " = " in line and not line.startswith("#"))
    assert settings["mqtt.exchange"] == EXCHANGE
    assert settings["mqtt.allow_anonymous"] == "false"
    assert "rabbitmq_mqtt" in config["data"]["enabled_plugins"]
    assert "rabbitmq_peer_discovery_k8s" in config["data"]["enabled_plugins"]
