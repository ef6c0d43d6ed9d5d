"""NVFlare startup kits: made by nvflare's own Provisioner, once, inside a state-tracked dynamic resource.

The kits and nvflare's certificate state (`cert.json`: the root CA and every participant's key and
certificate) are kept in the stack state as secret outputs. An update re-runs provisioning with that
state restored, so existing participants keep their certificates and adding a site changes nobody
else's kit. A participant certificate within `renewWithinDays` of expiry makes `diff` report a change (the
clock is read at diff time, never an input), and the update re-issues exactly those under the same root CA.
Provisioning never runs during the offline render: `placeholder_outputs` stands in for it.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pulumi
from pulumi import dynamic

# The engine routes `pulumi-python:*` types to the Python dynamic-provider plugin.
TYPE = "pulumi-python:dynamic/flstack:NvflareKits"
# The inputs that define the kits; everything else in the state is an output.
INPUTS = (
    "project",
    "version",
    "org",
    "server",
    "hostNames",
    "flPort",
    "sites",
    "admin",
    "workspace",
    "jobLauncher",
    "caGeneration",
    "renewWithinDays",
)
# A new project name or CA generation means a new root CA: every kit is re-issued (the resource is replaced).
REPLACING = ("project", "caGeneration")
OUTPUTS = ("startupKits", "localConfig", "certState", "rootCa")
SECRET_OUTPUTS = ["startupKits", "certState"]
# What a pod needs from startup/ (nvflare's own K8s job launcher keeps the same files): no start scripts.
STARTUP_SUFFIXES = (".json", ".crt", ".key", ".pem")
# Validity of a newly made root CA. nvflare refuses to reuse a root whose validity differs: never change it.
ROOT_VALID_DAYS = 3650
ADMIN_ROLE = "project_admin"
# cert.json keys that are the root CA, not participants (renewing the root is a new caGeneration).
ROOT_KEYS = ("root_cert", "root_pri_key")


class ProvisioningError(Exception):
    """nvflare could not make the kits (its Provisioner reports errors instead of raising)."""


# --- the dynamic resource ------------------------------------------------------------------------


class KitProvider(dynamic.ResourceProvider):
    """CRUD for the kits. Pickled into the state by reference: the class must stay importable by this path.

    `now` fixes the clock for the expiry check (tests); None reads it when `diff` or `update` runs.
    """

    def __init__(self, now: datetime.datetime | None = None) -> None:
        self.now = now  # read with getattr: a provider pickled into older states has no such attribute

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        inputs = kit_inputs(props)
        return dynamic.CreateResult(id_=f"{inputs['project']}-kits", outs={**inputs, **provision(inputs)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in INPUTS if olds.get(key) != news.get(key)]
        replaces = [key for key in changed if key in REPLACING]
        expiring = not replaces and bool(self._expiring(olds, news))
        return dynamic.DiffResult(changes=bool(changed) or expiring, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        inputs = kit_inputs(news)
        cert_state = olds.get("certState")
        if cert_state:
            cert_state = forget_subjects(cert_state, self._expiring(olds, news))
        return dynamic.UpdateResult(outs={**inputs, **provision(inputs, cert_state)})

    def _expiring(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        cert_state, within = olds.get("certState"), news.get("renewWithinDays")
        if not cert_state or within is None:
            return []
        now = getattr(self, "now", None) or datetime.datetime.now(datetime.UTC)
        return expiring_subjects(cert_state, now + datetime.timedelta(days=within))


class NvflareKits(dynamic.Resource, module="flstack", name="NvflareKits"):
    def __init__(self, name: str, inputs: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        outputs: dict[str, Any] = dict.fromkeys(OUTPUTS)  # declared so the SDK sets them as attributes
        super().__init__(KitProvider(), name, {**outputs, **inputs}, pulumi.ResourceOptions.merge(opts, secret))

    @property
    def startup_kits(self) -> pulumi.Output[dict[str, Any]]:
        """server / admin / sites.<name>: startup/ file name -> text (keys and certificates)."""
        return cast("pulumi.Output[dict[str, Any]]", self._output("startupKits"))

    @property
    def local_config(self) -> pulumi.Output[dict[str, Any]]:
        """The same shape for local/ (no secrets: resources, authorization, logging)."""
        return cast("pulumi.Output[dict[str, Any]]", self._output("localConfig"))

    @property
    def root_ca(self) -> pulumi.Output[str]:
        return cast("pulumi.Output[str]", self._output("rootCa"))

    def _output(self, key: str) -> Any:
        return vars(self)[key]  # dynamic resources keep the wire names: the SDK has no name table for them


def kit_inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    missing = [key for key in INPUTS if key not in props]
    if missing:
        raise ProvisioningError(f"NvflareKits inputs lack {', '.join(missing)}")
    return {key: props[key] for key in INPUTS}


# --- provisioning with nvflare ---------------------------------------------------------------------


def project_definition(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """nvflare's project.yml (API version 3) as a dict: the builders must be listed or nothing is built."""
    org = inputs["org"]
    server = {
        "name": inputs["server"],  # the name clients dial: it is the server's identity (CN) and first SAN
        "type": "server",
        "org": org,
        "fed_learn_port": inputs["flPort"],
        "host_names": list(inputs["hostNames"]),
    }
    sites = [{"name": site, "type": "client", "org": org} for site in inputs["sites"]]
    admin = {"name": inputs["admin"], "type": "admin", "org": org, "role": ADMIN_ROLE}
    return {
        "api_version": 3,
        "name": inputs["project"],
        "description": f"flstack federation {inputs['project']}",
        "participants": [server, *sites, admin],
        "builders": [
            {"path": "nvflare.lighter.impl.workspace.WorkspaceBuilder"},
            {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
            {"path": "nvflare.lighter.impl.cert.CertBuilder", "args": {"root_valid_days": ROOT_VALID_DAYS}},
            {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
        ],
    }


def provision(inputs: Mapping[str, Any], cert_state: str | None = None) -> dict[str, Any]:
    """Runs nvflare's Provisioner; with `cert_state` (an earlier `certState`) the CA and known certificates are kept."""
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
    definition = project_definition(inputs)
    with tempfile.TemporaryDirectory(prefix="flstack-nvflare-") as tmp:
        root = Path(tmp)
        state_file = root / definition["name"] / "state" / "cert.json"
        if cert_state:
            state_file.parent.mkdir(parents=True)
            state_file.write_text(forget_stale_server_cert(cert_state, inputs["server"], inputs["hostNames"]))
        log = _Log()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                project = prepare_project(definition)
                ctx = Provisioner(str(root), prepare_builders(definition), prepare_packager(definition)).provision(
                    project, logger=log
                )
            except (ValueError, RuntimeError) as ex:  # bad participant definitions
                raise ProvisioningError(f"nvflare rejected the project: {ex}") from ex
        result = ctx.get_result_location()
        if ctx.get(CtxKey.BUILD_ERROR) or not result:
            detail = "; ".join(log.errors) or err.getvalue().strip().splitlines()[-1:]
            raise ProvisioningError(f"nvflare provisioning failed: {detail}")
        kits = Path(result)
        _tailor_for_kubernetes(kits, inputs)
        return {
            "startupKits": _collect(kits, inputs, "startup"),
            "localConfig": _collect(kits, inputs, "local"),
            "certState": state_file.read_text(),
            "rootCa": (kits / inputs["server"] / "startup" / "rootCA.pem").read_text(),
        }


def forget_stale_server_cert(cert_state: str, server: str, host_names: list[str]) -> str:
    """Drops the server's saved certificate when its names changed, so nvflare issues a new one.

    nvflare reuses a saved certificate as is: without this, a new external hostname would never reach the
    server certificate. The root CA and every other participant's certificate are kept, so nobody needs a
    new kit; only the server's key and certificate change.
    """
    from cryptography import x509

    state = json.loads(cert_state)
    subject = server[:64]  # nvflare truncates long server names to the 64-character CN limit
    saved = state.get(subject, {}).get("cert")
    if saved:
        cert = x509.load_pem_x509_certificate(saved.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {str(n.value) for n in sans}
        if names != {server, *host_names}:
            del state[subject]
    return json.dumps(state)


def expiring_subjects(cert_state: str, deadline: datetime.datetime) -> list[str]:
    """The participants in nvflare's cert.json whose certificate is no longer valid at `deadline`."""
    from cryptography import x509

    state = json.loads(cert_state)
    return [
        subject
        for subject, entry in state.items()
        if subject not in ROOT_KEYS
        and isinstance(entry, dict)
        and "cert" in entry
        and x509.load_pem_x509_certificate(entry["cert"].encode()).not_valid_after_utc <= deadline
    ]


def forget_subjects(cert_state: str, subjects: list[str]) -> str:
    """Drops these participants' saved key and certificate: nvflare issues new ones under the kept root CA."""
    if not subjects:
        return cert_state
    state = json.loads(cert_state)
    return json.dumps({key: value for key, value in state.items() if key not in subjects})


def _collect(kits: Path, inputs: Mapping[str, Any], folder: str) -> dict[str, Any]:
    def files(participant: str) -> dict[str, str]:
        directory = kits / participant / folder
        keep = (lambda name: name.endswith(STARTUP_SUFFIXES)) if folder == "startup" else (lambda _: True)
        return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file() and keep(p.name)}

    return {
        "server": files(inputs["server"]),
        "admin": files(inputs["admin"]),
        "sites": {site: files(site) for site in inputs["sites"]},
    }


def _tailor_for_kubernetes(kits: Path, inputs: Mapping[str, Any]) -> None:
    """Adapts local/ the way `nvflare deploy prepare` does (its own code), startup/ is never touched.

    Process launcher: only the server's job and snapshot storage moves from /tmp into the persistent
    workspace. Kubernetes launcher: nvflare's k8s preparation (launcher component, internal parent port,
    storage) plus a study runtime whose pod template makes job pods pass the `restricted` Pod Security
    Standard.
    """
    from nvflare.tool.deploy import deploy_common, k8s_deploy

    launcher = inputs["jobLauncher"]
    server_kit = kits / inputs["server"]
    if launcher["kind"] == "process":
        with _nvflare_cli_errors():
            deploy_common._relocate_server_storage_to_workspace(server_kit, inputs["workspace"])
        return
    for kit, namespace in [
        (server_kit, launcher["serverNamespace"]),
        *((kits / site, launcher["siteNamespaces"][site]) for site in inputs["sites"]),
    ]:
        (kit / "local" / deploy_common.STUDY_RUNTIME_YAML).write_text(json.dumps(launcher["studyRuntime"], indent=2))
        config = {
            "runtime": "k8s",
            "namespace": namespace,
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
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
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


def placeholder_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic stand-ins with the kits' real file names, so manifests render without provisioning."""

    def pem(kind: str, who: str) -> str:
        return f"-----BEGIN {kind}-----\nmock-{who}\n-----END {kind}-----\n"

    def startup(who: str, role: str) -> dict[str, str]:
        base = "server" if role == "server" else "client"
        return {
            f"{base}.crt": pem("CERTIFICATE", who),
            f"{base}.key": pem("RSA PRIVATE KEY", who),
            f"fed_{role}.json": f"<fed_{role}.json of {who}>",
            "rootCA.pem": pem("CERTIFICATE", f"{inputs['project']}-root"),
        }

    def local(who: str) -> dict[str, str]:
        return {"resources.json.default": f"<resources.json.default of {who}>"}

    server, admin, sites = inputs["server"], inputs["admin"], list(inputs["sites"])
    return {
        "startupKits": {
            "server": startup(server, "server"),
            "admin": startup(admin, "admin"),
            "sites": {site: startup(site, "client") for site in sites},
        },
        "localConfig": {"server": local(server), "admin": local(admin), "sites": {site: local(site) for site in sites}},
        "certState": f"<cert.json of {inputs['project']}>",
        "rootCa": pem("CERTIFICATE", f"{inputs['project']}-root"),
    }
