"""The kits resource with real nvflare provisioning: stable certificates, no diff without changes."""

from __future__ import annotations

import datetime
import json
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from components.federations import nvflare_kits
from components.federations.nvflare_kits import KitProvider

SERVER = "nvflare-server.fl.svc.cluster.local"


def inputs(**overrides: Any) -> dict[str, Any]:
    base = {
        "project": "fl",
        "version": "2.9.0",
        "org": "flstack",
        "server": SERVER,
        "hostNames": ["nvflare-server", "nvflare-server.fl", "nvflare-server.fl.svc"],
        "flPort": 8002,
        "sites": ["site-1", "site-2"],
        "admin": "admin@flstack.dev",
        "workspace": "/var/tmp/nvflare/workspace",
        "jobLauncher": {"kind": "process"},
        "caGeneration": 1,
        "renewWithinDays": 30,
    }
    return {**base, **overrides}


@pytest.fixture(scope="module")
def two_sites() -> dict[str, Any]:
    """The state after a first `pulumi up`: the provider's outputs plus the serialized provider."""
    created = KitProvider().create({**inputs(), "__provider": "pickled-provider"})
    return {**(created.outs or {}), "__provider": "pickled-provider"}


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def sans(pem: str) -> set[str]:
    ext = cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in ext}


def test_same_inputs_are_no_change_even_with_a_new_provider_pickle(two_sites: dict[str, Any]) -> None:
    news = {**inputs(), "__provider": "re-pickled-provider"}
    result = KitProvider().diff("fl-kits", two_sites, news)
    assert result.changes is False
    assert result.replaces == []


def test_a_new_site_is_an_update_not_a_replacement(two_sites: dict[str, Any]) -> None:
    result = KitProvider().diff("fl-kits", two_sites, inputs(sites=["site-1", "site-2", "site-3"]))
    assert result.changes is True
    assert result.replaces == []


def test_a_new_ca_generation_replaces_the_kits(two_sites: dict[str, Any]) -> None:
    result = KitProvider().diff("fl-kits", two_sites, inputs(caGeneration=2))
    assert result.replaces == ["caGeneration"]


def test_adding_a_site_keeps_every_existing_kit_byte_identical(two_sites: dict[str, Any]) -> None:
    updated = KitProvider().update("fl-kits", two_sites, inputs(sites=["site-1", "site-2", "site-3"])).outs or {}
    before, after = two_sites["startupKits"], updated["startupKits"]
    for site in ("site-1", "site-2"):
        assert after["sites"][site] == before["sites"][site]  # client.crt, client.key, rootCA.pem, fed_client.json
        assert updated["localConfig"]["sites"][site] == two_sites["localConfig"]["sites"][site]
    assert after["server"] == before["server"]
    assert after["admin"] == before["admin"]
    assert updated["rootCa"] == two_sites["rootCa"]
    # The new site is signed by the same root CA, so the running server accepts it without a restart.
    root, new = cert(updated["rootCa"]), cert(after["sites"]["site-3"]["client.crt"])
    new.verify_directly_issued_by(root)
    assert new.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site-3"
    old_state, new_state = json.loads(two_sites["certState"]), json.loads(updated["certState"])
    assert {k: new_state[k] for k in old_state} == old_state


def test_the_server_certificate_names_what_sites_dial(two_sites: dict[str, Any]) -> None:
    server = two_sites["startupKits"]["server"]
    assert sans(server["server.crt"]) == {SERVER, "nvflare-server", "nvflare-server.fl", "nvflare-server.fl.svc"}
    fed_client = json.loads(two_sites["startupKits"]["sites"]["site-1"]["fed_client.json"])
    assert fed_client["servers"][0]["service"]["target"] == f"{SERVER}:8002"
    assert fed_client["servers"][0]["identity"] == SERVER


def test_a_new_hostname_reissues_only_the_server_certificate(two_sites: dict[str, Any]) -> None:
    names = [*inputs()["hostNames"], "fl.example.com"]
    updated = KitProvider().update("fl-kits", two_sites, inputs(hostNames=names)).outs or {}
    server = updated["startupKits"]["server"]
    assert "fl.example.com" in sans(server["server.crt"])
    assert server["server.key"] != two_sites["startupKits"]["server"]["server.key"]
    assert updated["rootCa"] == two_sites["rootCa"]
    assert updated["startupKits"]["sites"] == two_sites["startupKits"]["sites"]
    assert updated["startupKits"]["admin"] == two_sites["startupKits"]["admin"]


def test_only_the_files_pods_need_leave_the_provisioner(two_sites: dict[str, Any]) -> None:
    kits = two_sites["startupKits"]
    assert sorted(kits["server"]) == ["fed_server.json", "rootCA.pem", "server.crt", "server.key"]
    assert sorted(kits["sites"]["site-2"]) == ["client.crt", "client.key", "fed_client.json", "rootCA.pem"]
    assert sorted(kits["admin"]) == ["client.crt", "client.key", "fed_admin.json", "rootCA.pem"]
    assert "resources.json.default" in two_sites["localConfig"]["sites"]["site-1"]


def test_server_job_storage_moves_into_the_persistent_workspace(two_sites: dict[str, Any]) -> None:
    resources = json.loads(two_sites["localConfig"]["server"]["resources.json.default"])
    job_manager = next(c for c in resources["components"] if c["id"] == "job_manager")
    assert job_manager["args"]["uri_root"] == "/var/tmp/nvflare/workspace/jobs-storage"
    snapshot_root = resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"]
    assert snapshot_root == "/var/tmp/nvflare/workspace/snapshot-storage"


def test_placeholders_mirror_the_real_file_names(two_sites: dict[str, Any]) -> None:
    """The offline render's stand-in must name the same files, or rendered mounts would not match reality."""
    fake = nvflare_kits.placeholder_outputs(inputs())
    real = two_sites["startupKits"]
    assert sorted(fake["startupKits"]["server"]) == sorted(real["server"])
    assert sorted(fake["startupKits"]["admin"]) == sorted(real["admin"])
    assert sorted(fake["startupKits"]["sites"]["site-1"]) == sorted(real["sites"]["site-1"])
    assert set(fake) == set(nvflare_kits.OUTPUTS)


def test_a_version_other_than_the_installed_nvflare_is_refused() -> None:
    with pytest.raises(nvflare_kits.ProvisioningError, match=r"need nvflare==2\.8\.0 .* found 2\.9\.0"):
        nvflare_kits.provision(inputs(version="2.8.0"))


def test_nvflare_rejections_are_reported_not_swallowed() -> None:
    with pytest.raises(nvflare_kits.ProvisioningError, match="nvflare rejected the project"):
        nvflare_kits.provision(inputs(org="not-valid-org"))  # nvflare's org names have no '-'


def kubernetes_launcher() -> dict[str, Any]:
    return {
        "kind": "kubernetes",
        "serverNamespace": "fl",
        "siteNamespaces": {"site-1": "fl-site-1", "site-2": "fl-site-2"},
        "serverService": "nvflare-server",
        "image": "nvflare/nvflare:2.9.0",
        "parentPort": 8102,
        "jobPodSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "studyRuntime": {"format_version": 2, "studies": {}},
    }


def test_kubernetes_launcher_kits_are_prepared_by_nvflare_for_each_namespace() -> None:
    out = nvflare_kits.provision(inputs(jobLauncher=kubernetes_launcher()))
    site = out["localConfig"]["sites"]["site-1"]
    internal = json.loads(site["comm_config.json"])["internal"]
    assert internal["resources"] == {"connection_security": "mtls", "host": "site-1", "port": 8102}
    launcher = next(c for c in json.loads(site["resources.json.default"])["components"] if c["id"] == "k8s_launcher")
    assert launcher["path"].endswith("ClientK8sJobLauncher")
    assert launcher["args"]["namespace"] == "fl-site-1"
    assert launcher["args"]["security_context"] == {"runAsNonRoot": True, "runAsUser": 10001}
    server = json.loads(out["localConfig"]["server"]["comm_config.json"])["internal"]["resources"]
    assert (server["host"], server["port"]) == ("nvflare-server", 8102)
    assert json.loads(site["study_runtime.yaml"]) == {"format_version": 2, "studies": {}}


# --- renewal of certificates near expiry ---------------------------------------------------------


def days_from_now(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


def expiring_soon(state: dict[str, Any], subject: str, days: int) -> dict[str, Any]:
    """The state with `subject`'s certificate re-signed by the same root to expire in `days` (an aged kit)."""
    certs = json.loads(state["certState"])
    old = cert(certs[subject]["cert"])
    root_key = serialization.load_pem_private_key(certs["root_pri_key"].encode(), password=None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(old.public_key())
        .serial_number(old.serial_number)
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(days_from_now(days))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    aged = builder.sign(cast("rsa.RSAPrivateKey", root_key), hashes.SHA256())
    certs[subject]["cert"] = aged.public_bytes(serialization.Encoding.PEM).decode()
    return {**state, "certState": json.dumps(certs)}


def test_certificates_far_from_expiry_are_no_change(two_sites: dict[str, Any]) -> None:
    # nvflare issues participants 360 days: 300 days on, the 30-day window is not reached yet.
    assert KitProvider(now=days_from_now(300)).diff("fl-kits", two_sites, inputs()).changes is False


def test_certificates_within_the_window_are_a_change_not_a_replacement(two_sites: dict[str, Any]) -> None:
    result = KitProvider(now=days_from_now(340)).diff("fl-kits", two_sites, inputs())
    assert result.changes is True
    assert result.replaces == []
    # A wider window reaches the same certificates earlier.
    assert KitProvider(now=days_from_now(300)).diff("fl-kits", two_sites, inputs(renewWithinDays=90)).changes


def test_renewal_reissues_only_the_expiring_certificate_under_the_same_root(two_sites: dict[str, Any]) -> None:
    aged = expiring_soon(two_sites, "site-1", days=10)
    assert KitProvider().diff("fl-kits", aged, inputs()).changes is True
    updated = KitProvider().update("fl-kits", aged, inputs()).outs or {}
    before, after = two_sites["startupKits"], updated["startupKits"]
    renewed, root = cert(after["sites"]["site-1"]["client.crt"]), cert(updated["rootCa"])
    assert renewed.not_valid_after_utc > days_from_now(300)
    renewed.verify_directly_issued_by(root)
    assert renewed.subject == cert(before["sites"]["site-1"]["client.crt"]).subject
    assert after["sites"]["site-1"]["client.key"] != before["sites"]["site-1"]["client.key"]
    assert updated["rootCa"] == two_sites["rootCa"]
    assert after["sites"]["site-1"]["rootCA.pem"] == before["sites"]["site-1"]["rootCA.pem"]
    assert after["sites"]["site-2"] == before["sites"]["site-2"]
    assert after["server"] == before["server"]
    assert after["admin"] == before["admin"]
    # Renewed, the kit is stable again: the next `up` shows no change.
    assert KitProvider().diff("fl-kits", {**updated, "__provider": "p"}, inputs()).changes is False


def test_renewal_in_the_window_reissues_every_leaf_and_keeps_the_root(two_sites: dict[str, Any]) -> None:
    provider = KitProvider(now=days_from_now(340))
    updated = provider.update("fl-kits", two_sites, inputs()).outs or {}
    root = cert(updated["rootCa"])
    assert updated["rootCa"] == two_sites["rootCa"]
    kits = updated["startupKits"]
    for leaf in (kits["server"]["server.crt"], kits["admin"]["client.crt"], kits["sites"]["site-2"]["client.crt"]):
        cert(leaf).verify_directly_issued_by(root)
        assert cert(leaf).not_valid_after_utc > days_from_now(350)
    before = json.loads(two_sites["certState"])
    after = json.loads(updated["certState"])
    assert {k: after[k] for k in nvflare_kits.ROOT_KEYS} == {k: before[k] for k in nvflare_kits.ROOT_KEYS}
    assert all(after[k]["cert"] != before[k]["cert"] for k in before if k not in nvflare_kits.ROOT_KEYS)
    # The root (3650 days) is not renewed here: only a new caGeneration makes a new one.
    assert root.not_valid_after_utc > days_from_now(3600)
