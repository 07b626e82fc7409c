"""The Kubernetes manifests in deploy/ (schema-validated by .ci/run with kubernetes-validate --strict): the config
files their ConfigMaps carry are accepted by the binary (an unknown key would stop the pod at start), and the
probes and ports they name are the ones the processes serve."""

import pathlib
import subprocess

import yaml

from skyshard_processes import SKYSHARD

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"


def resources():
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield doc


def test_the_config_maps_are_valid_configs(tmp_path):
    configs = {}
    for r in resources():
        if r["kind"] == "ConfigMap":
            configs.update(r["data"])
    assert set(configs) == {"czar.toml", "worker.toml"}, configs.keys()
    for name, text in configs.items():
        path = tmp_path / name
        path.write_text(text)
        command = name.removesuffix(".toml")
        out = subprocess.run([SKYSHARD, command, "--config", str(path), "--help"], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, (name, out.stderr)
        # The same file with a misspelt key is refused, naming it.
        path.write_text(text + "\nrepilcas = 3\n")
        out = subprocess.run([SKYSHARD, command, "--config", str(path), "--help"], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 2 and "unknown key `repilcas`" in out.stderr, out.stderr


def test_probes_and_ports_match_the_configs():
    by_kind = {}
    for r in resources():
        by_kind.setdefault(r["kind"], []).append(r)
    configs = {k: v for r in by_kind["ConfigMap"] for k, v in r["data"].items()}
    for sts in by_kind["StatefulSet"]:
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        probe_port = ports[container["readinessProbe"]["httpGet"]["port"]]
        config = configs[container["args"][-1].rsplit("/", 1)[1]]
        assert str(probe_port) in config, (probe_port, config)
        # The secret comes from the Secret, never from the config file.
        assert "cluster_secret" not in config
        env = {e["name"]: e for e in container["env"]}
        assert env["SKYSHARD_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "skyshard-cluster"
        # Kubernetes waits longer than the process's own shutdown grace before it kills.
        grace = int(config.split("shutdown_grace = ")[1].split()[0])
        assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    assert any(p["kind"] == "PodDisruptionBudget" for p in resources())


def test_the_operations_guide_names_every_config_key():
    """docs/operations.md carries the key tables scripts/config-keys.py makes from --help: a flag added without
    regenerating them fails here."""
    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "config-keys.py"
    tables = subprocess.run(["python3", str(script), SKYSHARD], capture_output=True, text=True, timeout=60,
                            check=True).stdout
    assert tables.count("| `") > 40
    guide = (DEPLOY.parent / "docs" / "operations.md").read_text()
    assert tables in guide, "regenerate the key tables in docs/operations.md with scripts/config-keys.py"
