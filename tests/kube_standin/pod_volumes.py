"""Pod volumes as Docker storage: PVC -> named volume that outlives pods, emptyDir -> a volume
that lives as long as the pod, configMap/secret -> files on the host bind-mounted read-only."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import Mount

from .docker_pods import LABEL, LABEL_INSTANCE, LABEL_POD_UID, LABEL_VOLUME_KIND, ConfigError

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]


class ClaimPending(Exception):
    """A referenced PVC does not exist (or is being deleted): the pod cannot be scheduled."""


@dataclass
class Source:
    kind: str  # "volume", "bind" or "tmpfs"
    source: str  # volume name or host path
    read_only: bool = False
    fs_group_root: bool = False


class PodVolumes:
    def __init__(
        self,
        client: docker.DockerClient,
        instance_id: str,
        state_dir: Path,
        claim_volume_name: Callable[[str, str], str],
        extra_labels: dict[str, str] | None = None,
    ) -> None:
        self._docker = client
        self._instance = instance_id
        self._extra = dict(extra_labels or {})
        self._files = state_dir / "volumes"
        self._claim_volume_name = claim_volume_name

    def _ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        try:
            self._docker.volumes.get(name)
        except docker.errors.NotFound:
            self._docker.volumes.create(name=name, labels={**self._extra, **labels})

    def emptydir_name(self, pod_uid: str, volume: str) -> str:
        return f"standin-emptydir-{pod_uid[:8]}-{volume}"[:200]

    def prepare(self, pod: Obj, lookup: Lookup) -> dict[str, Source]:
        """Creates what the pod's volumes need; raises ClaimPending or ConfigError."""
        ns, uid = pod["metadata"]["namespace"], pod["metadata"]["uid"]
        sources: dict[str, Source] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                claim_ref = vol["persistentVolumeClaim"]
                claim = lookup("persistentvolumeclaims", ns, claim_ref["claimName"])
                if claim is None:
                    raise ClaimPending(
                        f'persistentvolumeclaim "{claim_ref["claimName"]}" not found')
                if claim["metadata"].get("deletionTimestamp"):
                    raise ClaimPending(
                        f'persistentvolumeclaim "{claim_ref["claimName"]}" is being deleted')
                volume = self._claim_volume_name(ns, claim_ref["claimName"])
                self._ensure_volume(volume, {
                    LABEL: "1", LABEL_INSTANCE: self._instance, LABEL_VOLUME_KIND: "pvc",
                    "io.devloop.standin.claim": f"{ns}/{claim_ref['claimName']}",
                })
                sources[name] = Source("volume", volume, bool(claim_ref.get("readOnly")), True)
            elif "emptyDir" in vol:
                if (vol["emptyDir"] or {}).get("medium") == "Memory":
                    sources[name] = Source("tmpfs", "")
                else:
                    volume = self.emptydir_name(uid, name)
                    self._ensure_volume(volume, {
                        LABEL: "1", LABEL_INSTANCE: self._instance, LABEL_POD_UID: uid,
                        LABEL_VOLUME_KIND: "emptydir",
                    })
                    sources[name] = Source("volume", volume, False, True)
            elif "configMap" in vol or "secret" in vol:
                sources[name] = Source("bind", str(self._write_files(pod, vol, lookup)), True)
            elif "hostPath" in vol:
                sources[name] = Source("bind", vol["hostPath"]["path"])
            else:
                # Unsupported kinds (projected, downwardAPI, ...) become empty scratch space.
                sources[name] = Source("tmpfs", "")
        return sources

    def _write_files(self, pod: Obj, vol: Obj, lookup: Lookup) -> Path:
        ns, uid = pod["metadata"]["namespace"], pod["metadata"]["uid"]
        is_cm = "configMap" in vol
        ref = vol["configMap" if is_cm else "secret"]
        ref_name = ref.get("name") if is_cm else ref.get("secretName")
        obj = lookup("configmaps" if is_cm else "secrets", ns, ref_name or "")
        if obj is None and not ref.get("optional"):
            kind = "configmap" if is_cm else "secret"
            raise ConfigError("ContainerCreating",
                              f'MountVolume.SetUp failed for volume "{vol["name"]}" : {kind} '
                              f'"{ref_name}" not found')
        if is_cm:
            data = {k: v.encode() for k, v in ((obj or {}).get("data") or {}).items()}
            data.update({k: base64.b64decode(v)
                         for k, v in ((obj or {}).get("binaryData") or {}).items()})
        else:
            data = {k: base64.b64decode(v) for k, v in ((obj or {}).get("data") or {}).items()}
        items = ref.get("items")
        files = {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data
        mode = ref.get("defaultMode", 0o644)
        target = self._files / uid / vol["name"]
        fresh = target.with_name(f".{vol['name']}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(parents=True)
        for path, content in files.items():
            file = fresh / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content)
            os.chmod(file, mode)
        fresh.chmod(0o755)
        if target.exists():
            same = _tree(target) == _tree(fresh)
            if same:
                shutil.rmtree(fresh)
                return target
            # Replace contents in place so an existing bind mount sees the update.
            for child in target.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            for child in fresh.iterdir():
                shutil.move(str(child), target / child.name)
            shutil.rmtree(fresh)
        else:
            fresh.rename(target)
        return target

    def mounts(self, container: Obj, sources: dict[str, Source]) -> list[Mount]:
        result = []
        for mount in container.get("volumeMounts") or []:
            source = sources.get(mount["name"])
            if source is None:
                continue
            read_only = bool(mount.get("readOnly")) or source.read_only
            sub = mount.get("subPath")
            if source.kind == "tmpfs":
                result.append(Mount(mount["mountPath"], None, type="tmpfs"))
            elif sub:
                base = self._host_path(source)
                path = (base / sub).resolve()
                if source.kind == "volume":
                    path.mkdir(parents=True, exist_ok=True)
                result.append(Mount(mount["mountPath"], str(path), type="bind",
                                    read_only=read_only))
            elif source.kind == "bind":
                result.append(Mount(mount["mountPath"], source.source, type="bind",
                                    read_only=read_only))
            else:
                result.append(Mount(mount["mountPath"], source.source, type="volume",
                                    read_only=read_only))
        return result

    def _host_path(self, source: Source) -> Path:
        if source.kind == "bind":
            return Path(source.source)
        return Path(self._docker.volumes.get(source.source).attrs["Mountpoint"])

    def apply_fs_group(self, pod: Obj, sources: dict[str, Source]) -> None:
        """Approximates fsGroup ownership: the volume root becomes group-writable by fsGroup."""
        group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
        if group is None:
            return
        for source in sources.values():
            if source.kind != "volume" or not source.fs_group_root:
                continue
            try:
                root = self._host_path(source)
                os.chown(root, -1, int(group))
                os.chmod(root, os.stat(root).st_mode | 0o2070)
            except (OSError, docker.errors.DockerException):
                logging.getLogger("kube_standin.volumes").debug("fsGroup on %s failed", source)

    def release(self, pod_uid: str) -> None:
        """Removes what lived only as long as the pod (emptyDir volumes, projected files)."""
        shutil.rmtree(self._files / pod_uid, ignore_errors=True)
        try:
            volumes = self._docker.volumes.list(filters={"label": f"{LABEL_POD_UID}={pod_uid}"})
        except docker.errors.DockerException:
            return
        for volume in volumes:
            with contextlib.suppress(docker.errors.DockerException):
                volume.remove(force=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
