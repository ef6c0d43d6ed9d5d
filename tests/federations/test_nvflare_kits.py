"""The CA and per-participant kit resources with real nvflare provisioning: stable certificates, no diff
without changes, adding a site touches nobody else, renewal, and the move from the old all-kits resource."""

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
from components.federations.nvflare_kits import CaProvider, ParticipantKitProvider
from tests.helpers import EXISTING, MINIKUBE, render
from tools.dynamic_up import DynamicUp
from tools.mock_runtime import OfflineMocks

SERVER = "nvflare-server.fl.svc.cluster.local"
HOST_NAMES = ["nvflare-server", "nvflare-server.fl", "nvflare-server.fl.svc"]


def common(**overrides: Any) -> dict[str, Any]:
    base = {
        "project": "fl",
        "version": "2.9.0",
        "org": "flstack",
        "server": SERVER,
        "flPort": 8002,
        "workspace": "/var/tmp/nvflare/workspace",
        "jobLauncher": {"kind": "process"},
        "caGeneration": 1,
        "renewWithinDays": 30,
    }
    return {**base, **overrides}


def ca_inputs(**overrides: Any) -> dict[str, Any]:
    return {**common(), "hostNames": HOST_NAMES, **overrides}


def kit_inputs(ca: dict[str, Any], name: str, kind: str = "client", **overrides: Any) -> dict[str, Any]:
    participant = {"name": name, "type": kind}
    trust = {"rootCa": ca["rootCa"], "caKey": ca["caKey"]}
    return {**common(), "participant": participant, "connectTo": None, **trust, **overrides}


def stored(outs: dict[str, Any] | None) -> dict[str, Any]:
    """What the engine keeps after a create or update: the outputs plus the serialized provider."""
    return {**(outs or {}), "__provider": "pickled-provider"}


@pytest.fixture(scope="module")
def ca() -> dict[str, Any]:
    return stored(CaProvider().create(ca_inputs()).outs)


@pytest.fixture(scope="module")
def site_1(ca: dict[str, Any]) -> dict[str, Any]:
    return stored(ParticipantKitProvider().create(kit_inputs(ca, "site-1")).outs)


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def sans(pem: str) -> set[str]:
    ext = cert(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in ext}


# --- the resources' diffs ------------------------------------------------------------------------


def test_same_inputs_are_no_change_even_with_a_new_provider_pickle(ca: dict[str, Any], site_1: dict[str, Any]) -> None:
    assert CaProvider().diff("fl-ca", ca, {**ca_inputs(), "__provider": "re-pickled"}).changes is False
    news = {**kit_inputs(ca, "site-1"), "__provider": "re-pickled"}
    assert ParticipantKitProvider().diff("fl-kit-site-1", site_1, news).changes is False


def test_a_new_ca_generation_replaces_the_ca_and_a_new_root_replaces_each_kit(
    ca: dict[str, Any], site_1: dict[str, Any]
) -> None:
    assert CaProvider().diff("fl-ca", ca, ca_inputs(caGeneration=2)).replaces == ["caGeneration"]
    # What a site kit sees when the CA is replaced: another root (unknown until the CA is made).
    news = kit_inputs(ca, "site-1", caGeneration=2, rootCa="04da6b54-80e4-46f7-96ec-b56ff0331ba9")
    assert ParticipantKitProvider().diff("fl-kit-site-1", site_1, news).replaces == ["caGeneration", "rootCa"]


def test_a_site_kit_is_signed_by_the_ca_and_names_the_server(ca: dict[str, Any], site_1: dict[str, Any]) -> None:
    startup = site_1["kit"]["startup"]
    assert sorted(startup) == ["client.crt", "client.key", "fed_client.json", "rootCA.pem"]
    client = cert(startup["client.crt"])
    client.verify_directly_issued_by(cert(ca["rootCa"]))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site-1"
    assert startup["rootCA.pem"] == ca["rootCa"] == ca["serverKit"]["startup"]["rootCA.pem"]
    fed_client = json.loads(startup["fed_client.json"])
    assert fed_client["servers"][0]["service"]["target"] == f"{SERVER}:8002"
    assert fed_client["servers"][0]["identity"] == SERVER
    assert "resources.json.default" in site_1["kit"]["local"]


def test_the_admin_kit_carries_the_project_admin_role(ca: dict[str, Any]) -> None:
    admin = ParticipantKitProvider().create(kit_inputs(ca, "admin@flstack.dev", "admin")).outs or {}
    startup = admin["kit"]["startup"]
    assert sorted(startup) == ["client.crt", "client.key", "fed_admin.json", "rootCA.pem"]
    subject = cert(startup["client.crt"]).subject
    assert subject.get_attributes_for_oid(NameOID.UNSTRUCTURED_NAME)[0].value == "project_admin"
    cert(startup["client.crt"]).verify_directly_issued_by(cert(ca["rootCa"]))


def test_the_verification_kit_is_a_least_role_member_signed_by_the_same_ca(ca: dict[str, Any]) -> None:
    """The verification Job's identity: nvflare's `member` role (default authorization: view only)."""
    verifier = {"name": "flstack-verify@flstack.dev", "type": "admin", "role": nvflare_kits.VERIFIER_ROLE}
    inputs = kit_inputs(ca, "flstack-verify@flstack.dev", "admin", participant=verifier)
    kit = (ParticipantKitProvider().create(inputs).outs or {})["kit"]
    issued = cert(kit["startup"]["client.crt"])
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "flstack-verify@flstack.dev"
    assert issued.subject.get_attributes_for_oid(NameOID.UNSTRUCTURED_NAME)[0].value == "member"
    assert issued.issuer == cert(ca["rootCa"]).subject
    assert kit["startup"]["rootCA.pem"] == ca["rootCa"]


def test_a_site_outside_the_cluster_dials_the_public_host_and_checks_the_server_identity(ca: dict[str, Any]) -> None:
    public = {"host": "fl.example.org", "port": 30802}
    outside = ParticipantKitProvider().create(kit_inputs(ca, "site-9", connectTo=public)).outs or {}
    server = json.loads(outside["kit"]["startup"]["fed_client.json"])["servers"][0]
    assert server["service"]["target"] == "fl.example.org:30802"
    assert server["identity"] == SERVER


def test_the_server_certificate_names_what_sites_dial(ca: dict[str, Any]) -> None:
    server = ca["serverKit"]["startup"]
    assert sorted(server) == ["fed_server.json", "rootCA.pem", "server.crt", "server.key"]
    assert sans(server["server.crt"]) == {SERVER, *HOST_NAMES}
    cert(server["server.crt"]).verify_directly_issued_by(cert(ca["rootCa"]))


def test_a_new_hostname_reissues_only_the_server_certificate(ca: dict[str, Any]) -> None:
    updated = CaProvider().update("fl-ca", ca, ca_inputs(hostNames=[*HOST_NAMES, "fl.example.com"])).outs or {}
    server = updated["serverKit"]["startup"]
    assert "fl.example.com" in sans(server["server.crt"])
    assert server["server.key"] != ca["serverKit"]["startup"]["server.key"]
    assert (updated["rootCa"], updated["caKey"]) == (ca["rootCa"], ca["caKey"])


def test_server_job_storage_moves_into_the_persistent_workspace(ca: dict[str, Any]) -> None:
    resources = json.loads(ca["serverKit"]["local"]["resources.json.default"])
    job_manager = next(c for c in resources["components"] if c["id"] == "job_manager")
    assert job_manager["args"]["uri_root"] == "/var/tmp/nvflare/workspace/jobs-storage"
    snapshot_root = resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"]
    assert snapshot_root == "/var/tmp/nvflare/workspace/snapshot-storage"


def test_placeholders_mirror_the_real_file_names(ca: dict[str, Any], site_1: dict[str, Any]) -> None:
    """The offline render's stand-in must name the same files, or rendered mounts would not match reality."""
    fake_ca = nvflare_kits.placeholder_ca_outputs(ca_inputs())
    assert set(fake_ca) == {"serverKit", "rootCa", "caKey"}
    assert sorted(fake_ca["serverKit"]["startup"]) == sorted(ca["serverKit"]["startup"])
    fake_site = nvflare_kits.placeholder_kit_outputs(kit_inputs(ca, "site-1"))["kit"]
    assert sorted(fake_site["startup"]) == sorted(site_1["kit"]["startup"])


def test_a_version_other_than_the_installed_nvflare_is_refused() -> None:
    with pytest.raises(nvflare_kits.ProvisioningError, match=r"need nvflare==2\.8\.0 .* found 2\.9\.0"):
        CaProvider().create(ca_inputs(version="2.8.0"))


def test_nvflare_rejections_are_reported_not_swallowed() -> None:
    with pytest.raises(nvflare_kits.ProvisioningError, match="nvflare rejected the project"):
        CaProvider().create(ca_inputs(org="not-valid-org"))  # nvflare's org names have no '-'


def kubernetes_launcher(namespace: str) -> dict[str, Any]:
    return {
        "kind": "kubernetes",
        "namespace": namespace,
        "serverService": "nvflare-server",
        "image": "nvflare/nvflare:2.9.0",
        "parentPort": 8102,
        "jobPodSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001},
        "studyRuntime": {"format_version": 2, "studies": {}},
    }


def test_kubernetes_launcher_kits_are_prepared_by_nvflare_for_each_namespace(ca: dict[str, Any]) -> None:
    inputs = kit_inputs(ca, "site-1", jobLauncher=kubernetes_launcher("fl-site-1"))
    site = (ParticipantKitProvider().create(inputs).outs or {})["kit"]["local"]
    internal = json.loads(site["comm_config.json"])["internal"]
    assert internal["resources"] == {"connection_security": "mtls", "host": "site-1", "port": 8102}
    launcher = next(c for c in json.loads(site["resources.json.default"])["components"] if c["id"] == "k8s_launcher")
    assert launcher["path"].endswith("ClientK8sJobLauncher")
    assert launcher["args"]["namespace"] == "fl-site-1"
    assert launcher["args"]["security_context"] == {"runAsNonRoot": True, "runAsUser": 10001}
    assert json.loads(site["study_runtime.yaml"]) == {"format_version": 2, "studies": {}}
    server = CaProvider().create(ca_inputs(jobLauncher=kubernetes_launcher("fl"))).outs or {}
    internal = json.loads(server["serverKit"]["local"]["comm_config.json"])["internal"]["resources"]
    assert (internal["host"], internal["port"]) == ("nvflare-server", 8102)


# --- whole stacks, as successive `pulumi up`s ----------------------------------------------------


def stack(sites: list[str], target: dict[str, Any] = MINIKUBE, **settings: Any) -> dict[str, Any]:
    federation = {"name": "demo", "framework": "nvflare", "nvflare": {"sites": sites, **settings}}
    return {"target": target, "federations": [federation]}


def up(engine: DynamicUp, config: dict[str, Any]) -> None:
    engine.next_up()
    render(config, OfflineMocks(synthesizers=engine.synthesizers(nvflare_kits.CA_TYPE, nvflare_kits.KIT_TYPE)))


def key_material(engine: DynamicUp) -> dict[str, str]:
    """Every certificate and key in the stack state, by resource and file."""
    found = {}
    for name, outs in engine.state.items():
        for kit in (outs.get("kit"), outs.get("serverKit")):
            for file, text in (kit or {}).get("startup", {}).items():
                if file.endswith((".crt", ".key", ".pem")):
                    found[f"{name}/{file}"] = text
        for field in ("rootCa", "caKey"):
            found[f"{name}/{field}"] = outs[field]
    return found


def test_adding_a_site_provisions_and_stores_only_that_site_and_keeps_every_certificate() -> None:
    engine = DynamicUp()
    up(engine, stack(["site-1", "site-2"]))
    # The verification Job's own kit too (verify is on by default on minikube); its inputs name no site.
    kits = ["demo-ca", "demo-kit-admin", "demo-kit-site-1", "demo-kit-site-2", "demo-kit-verify"]
    assert sorted(engine.written) == kits
    before = key_material(engine)
    up(engine, stack(["site-1", "site-2", "site-3"]))
    assert list(engine.written) == ["demo-kit-site-3"]
    after = key_material(engine)
    assert {k: after[k] for k in before} == before  # byte-identical, the root CA's key included
    new = cert(after["demo-kit-site-3/client.crt"])
    new.verify_directly_issued_by(cert(after["demo-ca/rootCa"]))  # the running server accepts it as it is
    up(engine, stack(["site-1", "site-2", "site-3"]))
    assert engine.written == {}  # and the next `up` is no change at all


def test_a_new_public_hostname_rewrites_only_the_ca() -> None:
    engine = DynamicUp()
    up(engine, stack(["site-1"], target=EXISTING))
    before = key_material(engine)
    exposure = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"], "hostnames": ["fl.example.org"]}
    up(engine, stack(["site-1"], target=EXISTING, exposure=exposure))
    assert list(engine.written) == ["demo-ca"]
    after = key_material(engine)
    assert "fl.example.org" in sans(after["demo-ca/server.crt"])
    unchanged = [k for k in before if "server." not in k]
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


# --- renewal of certificates near expiry ---------------------------------------------------------


def days_from_now(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


def aged(pem: str, ca_key: str, days: int) -> str:
    """`pem` re-signed by the same root to expire in `days` (an aged kit)."""
    old = cert(pem)
    root_key = serialization.load_pem_private_key(ca_key.encode(), password=None)
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
    signed = builder.sign(cast("rsa.RSAPrivateKey", root_key), hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def test_certificates_far_from_expiry_are_no_change(ca: dict[str, Any], site_1: dict[str, Any]) -> None:
    # nvflare issues participants 360 days: 300 days on, the 30-day window is not reached yet.
    assert CaProvider(now=days_from_now(300)).diff("fl-ca", ca, ca_inputs()).changes is False
    later = ParticipantKitProvider(now=days_from_now(300))
    assert later.diff("fl-kit-site-1", site_1, kit_inputs(ca, "site-1")).changes is False


def test_certificates_within_the_window_are_a_change_not_a_replacement(
    ca: dict[str, Any], site_1: dict[str, Any]
) -> None:
    result = ParticipantKitProvider(now=days_from_now(340)).diff("fl-kit-site-1", site_1, kit_inputs(ca, "site-1"))
    assert (result.changes, result.replaces) == (True, [])
    result = CaProvider(now=days_from_now(340)).diff("fl-ca", ca, ca_inputs())
    assert (result.changes, result.replaces) == (True, [])
    # A wider window reaches the same certificates earlier.
    assert CaProvider(now=days_from_now(300)).diff("fl-ca", ca, ca_inputs(renewWithinDays=90)).changes


def test_renewal_reissues_the_expiring_site_certificate_under_the_same_root(
    ca: dict[str, Any], site_1: dict[str, Any]
) -> None:
    startup = site_1["kit"]["startup"]
    aged_startup = {**startup, "client.crt": aged(startup["client.crt"], ca["caKey"], 10)}
    old = {**site_1, "kit": {**site_1["kit"], "startup": aged_startup}}
    news = kit_inputs(ca, "site-1")
    assert ParticipantKitProvider().diff("fl-kit-site-1", old, news).changes is True
    renewed = ParticipantKitProvider().update("fl-kit-site-1", old, news).outs or {}
    new = renewed["kit"]["startup"]
    assert cert(new["client.crt"]).not_valid_after_utc > days_from_now(300)
    cert(new["client.crt"]).verify_directly_issued_by(cert(ca["rootCa"]))
    assert cert(new["client.crt"]).subject == cert(startup["client.crt"]).subject
    assert new["client.key"] != startup["client.key"]
    assert new["rootCA.pem"] == startup["rootCA.pem"]
    # Renewed, the kit is stable again: the next `up` shows no change.
    assert ParticipantKitProvider().diff("fl-kit-site-1", stored(renewed), news).changes is False


def test_renewal_of_the_server_keeps_the_root(ca: dict[str, Any]) -> None:
    updated = CaProvider(now=days_from_now(340)).update("fl-ca", ca, ca_inputs()).outs or {}
    server = cert(updated["serverKit"]["startup"]["server.crt"])
    assert (updated["rootCa"], updated["caKey"]) == (ca["rootCa"], ca["caKey"])
    server.verify_directly_issued_by(cert(ca["rootCa"]))
    assert server.not_valid_after_utc > days_from_now(350)
    # The root (3650 days) is not renewed here: only a new caGeneration makes a new one.
    assert cert(updated["rootCa"]).not_valid_after_utc > days_from_now(3600)


# --- stacks from before per-participant kits ------------------------------------------------------


def legacy_state() -> dict[str, Any]:
    """What the old all-kits resource stored: nvflare's cert.json of the whole project and every kit."""
    participants = [{"name": "site-1", "type": "client"}, {"name": "admin@flstack.dev", "type": "admin"}]
    definition = nvflare_kits.project_definition(common(), participants, HOST_NAMES)
    with nvflare_kits.provisioned(common(), definition, None, only_participant=False) as (kits, state):
        server = (kits / SERVER / "startup" / "server.crt").read_text()
        return {"server": SERVER, "certState": json.dumps(state), "rootCa": state["root_cert"], "server.crt": server}


def test_the_ca_takes_over_the_old_kits_resource_keeping_its_root_and_server_certificate() -> None:
    old = stored(legacy_state())
    assert CaProvider().diff("demo-kits", old, ca_inputs()).changes is True  # moves to the new shape
    moved = CaProvider().update("demo-kits", old, ca_inputs()).outs or {}
    assert moved["rootCa"] == old["rootCa"]
    assert moved["caKey"] == json.loads(old["certState"])["root_pri_key"]
    assert moved["serverKit"]["startup"]["server.crt"] == old["server.crt"]
    assert CaProvider().diff("demo-ca", stored(moved), ca_inputs()).changes is False


def test_many_kits_leave_the_sdk_pickler_as_they_found_it() -> None:
    """pulumi's serialize_provider nests a wrapper around the pickler per dynamic resource: at ~1000 kits in one
    program pickling would exceed the recursion limit, unless each kit undoes it."""
    import pickle

    before = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
    render(stack([f"site-{i}" for i in range(1, 6)]))
    assert pickle._Pickler._batch_setitems is before  # type: ignore[attr-defined]
