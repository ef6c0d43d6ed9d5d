"""NVFlare startup kits: made by nvflare's own Provisioner, inside state-tracked dynamic resources.

One `NvflareCa` resource holds the root CA and the server's kit; every site and the admin have an
`NvflareKit` resource of their own, signed by that CA (nvflare's CertBuilder with the CA's key as its
saved state). Adding a site provisions and stores only that site; nobody else's resource changes, and a
site's own kit is one output a site stack can read. Keys and certificates live in the stack state as
secret outputs; an update restores them, so a kit is only re-issued when its own inputs require it.
A certificate within `renewWithinDays` of expiry makes `diff` report a change (the clock is read at diff
time, never an input), and the update re-issues it under the same root CA. Provisioning never runs
during the offline render: `placeholder_outputs` stands in for it.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import pulumi
from pulumi import dynamic

# The engine routes `pulumi-python:*` types to the Python dynamic-provider plugin.
CA_TYPE = "pulumi-python:dynamic/flstack:NvflareCa"
KIT_TYPE = "pulumi-python:dynamic/flstack:NvflareKit"
# Before kits were per participant one resource `<federation>-kits` held them all: the CA resource takes it
# over (an alias), so existing stacks keep their root CA and server certificate.
LEGACY_TYPE = "pulumi-python:dynamic/flstack:NvflareKits"
# Inputs shared by the CA and every kit: a new project name or CA generation means a new root CA.
COMMON_INPUTS = ("project", "version", "org", "server", "flPort", "workspace", "jobLauncher", "caGeneration")
CA_INPUTS = (*COMMON_INPUTS, "hostNames", "renewWithinDays")
# A participant kit is signed by the CA's key (`caKey`) and trusts `rootCa`; `connectTo` ({host, port}) is
# what its fed_client.json dials when that is not the server's name (a site outside the server's cluster).
KIT_INPUTS = (*COMMON_INPUTS, "participant", "connectTo", "rootCa", "caKey", "renewWithinDays")
REPLACING = ("project", "caGeneration")
OPTIONAL = ("connectTo",)  # None: the engine drops it from the inputs
CA_SECRET_OUTPUTS = ["caKey", "serverKit"]
KIT_SECRET_OUTPUTS = ["caKey", "kit"]
# What a pod needs from startup/ (nvflare's own K8s job launcher keeps the same files): no start scripts.
STARTUP_SUFFIXES = (".json", ".crt", ".key", ".pem")
# Validity of a newly made root CA. nvflare refuses to reuse a root whose validity differs: never change it.
ROOT_VALID_DAYS = 3650
ADMIN_ROLE = "project_admin"
# The verification Job's identity: nvflare 2.9's default authorization (master_template.yml, default_authz)
# gives `member` only `view` (check_status, list_jobs, ...): it cannot submit, manage or operate anything.
VERIFIER_ROLE = "member"
# cert.json keys that are the root CA, not participants (renewing the root is a new caGeneration).
ROOT_KEYS = ("root_cert", "root_pri_key")
CN_LIMIT = 64  # nvflare truncates long server names to the 64-character CN limit
# The engine's Python provider plugin serves creates concurrently in one process, and redirecting stdout is
# process-wide: interleaved, one call would restore another's capture for good. One provisioning at a time.
_QUIET = threading.RLock()


class ProvisioningError(Exception):
    """nvflare could not make the kits (its Provisioner reports errors instead of raising)."""


# --- the dynamic resources -----------------------------------------------------------------------


class _CertProvider(dynamic.ResourceProvider):
    """CRUD shared by the CA and the kits: provision on create, keep saved certificates on update.

    Pickled into the state by reference: the classes must stay importable by these paths. `now` fixes the
    clock for the expiry check (tests); None reads it when `diff` or `update` runs.
    """

    inputs: ClassVar[tuple[str, ...]]

    def __init__(self, now: datetime.datetime | None = None) -> None:
        self.now = now  # read with getattr: a provider pickled into older states has no such attribute

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        inputs = pick_inputs(props, self.inputs)
        return dynamic.CreateResult(id_=self._id(inputs), outs={**inputs, **self._provision(inputs, None)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in self.inputs if olds.get(key) != news.get(key)]
        replaces = [key for key in changed if key in self._replacing()]
        stale = not replaces and (self._outdated(olds) or bool(self._expiring(olds, news)))
        return dynamic.DiffResult(changes=bool(changed) or stale, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        inputs = pick_inputs(news, self.inputs)
        saved = self._saved(olds, inputs)
        if saved:
            saved = forget_subjects(saved, self._expiring(olds, news))
        return dynamic.UpdateResult(outs={**inputs, **self._provision(inputs, saved)})

    def _expiring(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        saved, within = self._saved(olds, news), news.get("renewWithinDays")
        if not saved or within is None:
            return []
        now = getattr(self, "now", None) or datetime.datetime.now(datetime.UTC)
        return expiring_subjects(saved, now + datetime.timedelta(days=within))

    def _replacing(self) -> tuple[str, ...]:
        return REPLACING

    def _outdated(self, olds: Mapping[str, Any]) -> bool:
        return False

    def _id(self, inputs: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def _saved(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        """nvflare's cert.json content for this resource, from its stored outputs ({} if there is none)."""
        raise NotImplementedError

    def _provision(self, inputs: Mapping[str, Any], saved: dict[str, Any] | None) -> dict[str, Any]:
        raise NotImplementedError


class CaProvider(_CertProvider):
    """The root CA and the server's kit."""

    inputs = CA_INPUTS

    def _id(self, inputs: Mapping[str, Any]) -> str:
        return f"{inputs['project']}-ca"

    def _outdated(self, olds: Mapping[str, Any]) -> bool:
        return "certState" in olds  # a state of the old all-kits resource: the update moves it to this shape

    def _saved(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        subject = str(olds.get("server"))[:CN_LIMIT]  # the saved certificate is the old server name's
        if "certState" in olds:  # the old all-kits resource: keep its root CA and server certificate only
            state = json.loads(olds["certState"])
            return {key: state[key] for key in (*ROOT_KEYS, subject) if key in state}
        startup = (olds.get("serverKit") or {}).get("startup")
        if not startup or not olds.get("caKey"):
            return {}
        server = {"cert": startup["server.crt"], "pri_key": startup["server.key"]}
        return {"root_cert": olds["rootCa"], "root_pri_key": olds["caKey"], subject: server}

    def _provision(self, inputs: Mapping[str, Any], saved: dict[str, Any] | None) -> dict[str, Any]:
        if saved:
            saved = forget_stale_server_cert(saved, inputs["server"], inputs["hostNames"])
        definition = project_definition(inputs, [], inputs["hostNames"])
        with provisioned(inputs, definition, saved, only_participant=False) as (kits, state):
            server = kits / inputs["server"][:CN_LIMIT]
            _tailor_for_kubernetes(server, inputs, "server")
            return {
                "serverKit": _collect(server),
                "rootCa": state["root_cert"],
                "caKey": state["root_pri_key"],
            }


# Old states pickled the all-kits provider by this name: it now stands for the CA (the alias's target).
KitProvider = CaProvider


class ParticipantKitProvider(_CertProvider):
    """One site's or the admin's kit, signed by the CA's key."""

    inputs = KIT_INPUTS

    def _id(self, inputs: Mapping[str, Any]) -> str:
        return f"{inputs['project']}-kit-{inputs['participant']['name']}"

    def _replacing(self) -> tuple[str, ...]:
        return (*REPLACING, "participant", "rootCa")  # another identity or another CA: a new kit

    def _saved(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, Any]:
        startup = (olds.get("kit") or {}).get("startup")
        if not startup:
            return {}
        mine = {"cert": startup["client.crt"], "pri_key": startup["client.key"]}
        return {"root_cert": olds["rootCa"], "root_pri_key": olds["caKey"], olds["participant"]["name"]: mine}

    def _provision(self, inputs: Mapping[str, Any], saved: dict[str, Any] | None) -> dict[str, Any]:
        participant = inputs["participant"]
        root = {"root_cert": inputs["rootCa"], "root_pri_key": inputs["caKey"]}
        definition = project_definition(inputs, [participant], [], inputs.get("connectTo"))
        with provisioned(inputs, definition, {**(saved or {}), **root}, only_participant=True) as (kits, _):
            kit = kits / participant["name"]
            if participant["type"] == "client":
                _tailor_for_kubernetes(kit, inputs, "site")
            return {"kit": _collect(kit)}


@contextlib.contextmanager
def _pickler_unwrapped() -> Iterator[None]:
    """Undoes the SDK's pickler patch after a dynamic resource serialized its provider.

    pulumi 3.272's serialize_provider wraps `pickle._Pickler._batch_setitems` in a sorting wrapper for every
    dynamic resource and never unwraps it: the wrappers nest one level per resource, and at about a thousand
    kits in one program pickling exceeds the recursion limit. Each resource's own (sorted) pickle is unchanged.
    """
    import pickle

    kept = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
    try:
        yield
    finally:
        pickle._Pickler._batch_setitems = kept  # type: ignore[attr-defined]


class NvflareCa(dynamic.Resource, module="flstack", name="NvflareCa"):
    def __init__(self, name: str, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=CA_SECRET_OUTPUTS)
        outputs: dict[str, Any] = dict.fromkeys(["serverKit", "rootCa", "caKey"])  # so the SDK sets attributes
        with _pickler_unwrapped():
            super().__init__(CaProvider(), name, {**outputs, **inputs}, pulumi.ResourceOptions.merge(opts, secret))

    @property
    def server_kit(self) -> pulumi.Output[dict[str, Any]]:
        """startup / local: file name -> text (startup/ holds the server's key)."""
        return cast("pulumi.Output[dict[str, Any]]", vars(self)["serverKit"])

    @property
    def root_ca(self) -> pulumi.Output[str]:
        return cast("pulumi.Output[str]", vars(self)["rootCa"])

    @property
    def ca_key(self) -> pulumi.Output[str]:
        return cast("pulumi.Output[str]", vars(self)["caKey"])


class NvflareKit(dynamic.Resource, module="flstack", name="NvflareKit"):
    def __init__(self, name: str, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=KIT_SECRET_OUTPUTS)
        outputs: dict[str, Any] = {"kit": None}
        with _pickler_unwrapped():
            merged = pulumi.ResourceOptions.merge(opts, secret)
            super().__init__(ParticipantKitProvider(), name, {**outputs, **inputs}, merged)

    @property
    def kit(self) -> pulumi.Output[dict[str, Any]]:
        """startup / local: file name -> text (startup/ holds the participant's key)."""
        return cast("pulumi.Output[dict[str, Any]]", vars(self)["kit"])


def pick_inputs(props: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    missing = [key for key in keys if key not in props and key not in OPTIONAL]
    if missing:
        raise ProvisioningError(f"NVFlare kit inputs lack {', '.join(missing)}")
    return {key: props.get(key) for key in keys}


# --- provisioning with nvflare ---------------------------------------------------------------------


def project_definition(
    inputs: Mapping[str, Any],
    participants: Sequence[Mapping[str, Any]],
    host_names: list[str],
    connect_to: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """nvflare's project.yml (API version 3) as a dict: the builders must be listed or nothing is built.

    The server is always part of the project (a client's fed_client.json names it); `participants` are
    `{name, type}` with type client or admin (an admin's `role`: project_admin unless given).
    """
    org = inputs["org"]
    server = {
        "name": inputs["server"],  # the name clients dial: it is the server's identity (CN) and first SAN
        "type": "server",
        "org": org,
        "fed_learn_port": inputs["flPort"],
        "host_names": [*host_names, *([connect_to["host"]] if connect_to else [])],
    }
    members = []
    for p in participants:
        member = {"name": p["name"], "type": p["type"], "org": org}
        if p["type"] == "admin":
            member["role"] = p.get("role", ADMIN_ROLE)  # the project admin, or a least-role admin (verification)
        elif connect_to:
            member["connect_to"] = {"host": connect_to["host"], "port": connect_to["port"]}
        members.append(member)
    return {
        "api_version": 3,
        "name": inputs["project"],
        "description": f"flstack federation {inputs['project']}",
        "participants": [server, *members],
        "builders": [
            {"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder"},
            {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
            {"path": "nvflare.lighter.impl.cert.CertBuilder", "args": {"root_valid_days": ROOT_VALID_DAYS}},
            {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
        ],
    }


@contextlib.contextmanager
def provisioned(
    inputs: Mapping[str, Any], definition: dict[str, Any], saved: dict[str, Any] | None, only_participant: bool
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Runs nvflare's Provisioner with `saved` as its cert.json (the root CA and known certificates are kept).

    Yields the folder of kits and the cert.json nvflare leaves. `only_participant`: nvflare's CertBuilder
    issues certificates for the project's clients and admins but not its server (the CA resource's).
    """
    import nvflare
    from nvflare.lighter.constants import CtxKey
    from nvflare.lighter.prov_utils import prepare_builders, prepare_packager
    from nvflare.lighter.provision import prepare_project
    from nvflare.lighter.provisioner import Provisioner

    if nvflare.__version__ != inputs["version"]:
        raise ProvisioningError(
            f"kits for NVFlare {inputs['version']} need nvflare=={inputs['version']} in the Pulumi program's "
            f"environment, found {nvflare.__version__}: change the pin in requirements.txt or the version setting"
        )
    with tempfile.TemporaryDirectory(prefix="flstack-nvflare-") as tmp:
        root = Path(tmp)
        state_file = root / definition["name"] / "state" / "cert.json"
        if saved:
            state_file.parent.mkdir(parents=True)
            state_file.write_text(json.dumps(saved))
        log = _Log()
        with _QUIET, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                project = prepare_project(definition)
                builders = prepare_builders(definition)
                if only_participant:
                    builders = [_without_server(b) for b in builders]
                ctx = Provisioner(str(root), builders, prepare_packager(definition)).provision(project, logger=log)
            except (ValueError, RuntimeError) as ex:  # bad participant definitions
                raise ProvisioningError(f"nvflare rejected the project: {ex}") from ex
        result = ctx.get_result_location()
        if ctx.get(CtxKey.BUILD_ERROR) or not result:
            detail = "; ".join(log.errors) or err.getvalue().strip().splitlines()[-1:]
            raise ProvisioningError(f"nvflare provisioning failed: {detail}")
        yield Path(result), json.loads(state_file.read_text())


def _without_server(builder: Any) -> Any:
    """nvflare's CertBuilder, issuing for the project's participants but not its server.

    A participant's kit needs the server in the project (fed_client.json names it), not the server's key:
    nvflare's builder would make one for the server and we would throw it away (a wasted RSA key each time).
    """
    from nvflare.lighter.impl.cert import CertBuilder

    if not isinstance(builder, CertBuilder):
        return builder

    class ParticipantCertBuilder(CertBuilder):  # type: ignore[misc]
        def build(self, project: Any, ctx: Any) -> None:
            server = project.remove_server()
            try:
                super().build(project, ctx)
            finally:
                project.add_participant(server)

    return ParticipantCertBuilder(root_valid_days=builder.root_valid_days)


def forget_stale_server_cert(cert_state: dict[str, Any], server: str, host_names: list[str]) -> dict[str, Any]:
    """Drops the server's saved certificate when its names changed, so nvflare issues a new one.

    nvflare reuses a saved certificate as is: without this, a new external hostname would never reach the
    server certificate. The root CA and every participant's certificate are kept, so nobody needs a new kit;
    only the server's key and certificate change.
    """
    from cryptography import x509

    subject = server[:CN_LIMIT]
    saved = cert_state.get(subject, {}).get("cert")
    if saved:
        cert = x509.load_pem_x509_certificate(saved.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if {str(n.value) for n in sans} != {server, *host_names}:
            return {key: value for key, value in cert_state.items() if key != subject}
    return cert_state


def expiring_subjects(cert_state: Mapping[str, Any], deadline: datetime.datetime) -> list[str]:
    """The participants in nvflare's cert.json whose certificate is no longer valid at `deadline`."""
    from cryptography import x509

    return [
        subject
        for subject, entry in cert_state.items()
        if subject not in ROOT_KEYS
        and isinstance(entry, dict)
        and "cert" in entry
        and x509.load_pem_x509_certificate(entry["cert"].encode()).not_valid_after_utc <= deadline
    ]


def forget_subjects(cert_state: dict[str, Any], subjects: list[str]) -> dict[str, Any]:
    """Drops these participants' saved key and certificate: nvflare issues new ones under the kept root CA."""
    return {key: value for key, value in cert_state.items() if key not in subjects}


def _collect(kit: Path) -> dict[str, dict[str, str]]:
    def files(folder: str, keep: Any) -> dict[str, str]:
        directory = kit / folder
        return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file() and keep(p.name)}

    return {
        "startup": files("startup", lambda name: name.endswith(STARTUP_SUFFIXES)),
        "local": files("local", lambda _: True),
    }


def _tailor_for_kubernetes(kit: Path, inputs: Mapping[str, Any], role: str) -> None:
    """Adapts local/ the way `nvflare deploy prepare` does (its own code), startup/ is never touched.

    Process launcher: only the server's job and snapshot storage moves from /tmp into the persistent
    workspace. Kubernetes launcher: nvflare's k8s preparation (launcher component, internal parent port,
    storage) plus a study runtime whose pod template makes job pods pass the `restricted` Pod Security
    Standard.
    """
    from nvflare.tool.deploy import deploy_common, k8s_deploy

    launcher = inputs["jobLauncher"]
    if launcher["kind"] == "process":
        if role == "server":
            with _nvflare_cli_errors():
                deploy_common._relocate_server_storage_to_workspace(kit, inputs["workspace"])
        return
    (kit / "local" / deploy_common.STUDY_RUNTIME_YAML).write_text(json.dumps(launcher["studyRuntime"], indent=2))
    config = {
        "runtime": "k8s",
        "namespace": launcher["namespace"],
        "server_service_name": launcher["serverService"],
        "parent": {
            "docker_image": launcher["image"],
            "parent_port": launcher["parentPort"],
            "workspace_mount_path": inputs["workspace"],
        },
        "job_launcher": {"job_pod_security_context": launcher["jobPodSecurityContext"]},
    }
    with _nvflare_cli_errors():
        k8s_deploy.validate_config(config)
        k8s_deploy.prepare(deploy_common.validate_kit(kit), kit.parent / f".{kit.name}-prepared", config)


@contextlib.contextmanager
def _nvflare_cli_errors() -> Iterator[None]:
    """nvflare's deploy helpers report problems by printing and exiting (they were written for the CLI)."""
    out = io.StringIO()
    try:
        with _QUIET, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    except SystemExit as ex:
        raise ProvisioningError(f"nvflare kit preparation failed: {out.getvalue().strip()}") from ex


class _Log:
    """A quiet logger for the Provisioner (its default is print); errors are kept for the message."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        self.errors.append(msg)


# --- the offline render's stand-in ---------------------------------------------------------------


def _pem(kind: str, who: str) -> str:
    return f"-----BEGIN {kind}-----\nmock-{who}\n-----END {kind}-----\n"


def _placeholder_kit(who: str, role: str, project: str) -> dict[str, dict[str, str]]:
    base = "server" if role == "server" else "client"
    startup = {
        f"{base}.crt": _pem("CERTIFICATE", who),
        f"{base}.key": _pem("RSA PRIVATE KEY", who),
        f"fed_{role}.json": f"<fed_{role}.json of {who}>",
        "rootCA.pem": _pem("CERTIFICATE", f"{project}-root"),
    }
    return {"startup": startup, "local": {"resources.json.default": f"<resources.json.default of {who}>"}}


def placeholder_ca_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic stand-ins with the kits' real file names, so manifests render without provisioning."""
    project = inputs["project"]
    return {
        "serverKit": _placeholder_kit(inputs["server"], "server", project),
        "rootCa": _pem("CERTIFICATE", f"{project}-root"),
        "caKey": _pem("RSA PRIVATE KEY", f"{project}-root"),
    }


def placeholder_kit_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    participant = inputs["participant"]
    role = "admin" if participant["type"] == "admin" else "client"
    return {"kit": _placeholder_kit(participant["name"], role, inputs["project"])}
