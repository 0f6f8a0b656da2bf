"""Load ``taskyard.yaml`` (plus per-worker files in ``workers_dir``) and ``TASKYARD_*`` overrides into Settings.

Every problem is collected as a :class:`~engine.errors.ConfigIssue` naming the file, the key and the reason, and
raised together in one :class:`~engine.errors.ConfigError`, so ``taskyard config check`` shows them all at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config import defaults
from config.settings import Settings, WorkerSpec
from engine.errors import ConfigError, ConfigIssue

__all__ = ["ENV_OVERRIDES", "find_config_file", "load_settings"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# TASKYARD_<NAME> environment variables that override a top-level key.
ENV_OVERRIDES = (
    "api_key",
    "redis_url",
    "data_dir",
    "host",
    "port",
    "max_queue_depth",
    "heartbeat_interval",
    "log_level",
    "workers_dir",
)

class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false. YAML 1.1 reads mecha's ``on:`` key (and yes/no/off) as booleans."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

BUILTIN_ECHO = {"name": "echo", "handler": "workers.builtin:echo", "concurrency": 4}


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, else ``TASKYARD_CONFIG``, else ``./taskyard.yaml`` if present."""
    if explicit:
        return Path(explicit)
    if env.get("TASKYARD_CONFIG"):
        return Path(env["TASKYARD_CONFIG"])
    candidate = Path(defaults.CONFIG_FILE)
    return candidate if candidate.is_file() else None


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, expand and validate the configuration. Raises ConfigError listing every issue."""
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    issues: list[ConfigIssue] = []
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    label = "<defaults>"
    if file is not None:
        label = str(file)
        base_dir = file.resolve().parent
        raw = _read_yaml(file, issues)
    raw = _expand_env(raw, env, label, "", issues)
    origins: dict[str, str] = {}  # top-level key -> where its value came from, when not the file
    for name in ENV_OVERRIDES:
        value = env.get(f"TASKYARD_{name.upper()}")
        if value:
            raw[name] = value
            origins[name] = f"environment TASKYARD_{name.upper()}"
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
            origins[key] = f"command line --{key.replace('_', '-')}"

    worker_files: dict[str, str] = {}
    workers = raw.get("workers") or []
    if not isinstance(workers, list):
        issues.append(ConfigIssue(label, "workers", "must be a list of worker definitions"))
        workers = []
    raw["workers"] = workers
    if raw.get("workers_dir"):
        wdir = Path(str(raw["workers_dir"]))
        wdir = wdir if wdir.is_absolute() else base_dir / wdir
        from_dir = _read_workers_dir(wdir, env, issues)
        raw["workers"] = list(workers) + [data for data, _ in from_dir]
        worker_files = {str(data.get("name")): file for data, file in from_dir}
        raw["workers_dir"] = str(wdir)
    if raw.get("data_dir") and not Path(str(raw["data_dir"])).is_absolute() and file is not None:
        raw["data_dir"] = str(base_dir / str(raw["data_dir"]))

    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        issues.extend(_issues_from(exc, label, raw, origins))
    if issues or settings is None:
        raise ConfigError(issues)
    settings.worker_files.update(worker_files)
    if not settings.workers and settings.builtin_echo:
        settings = settings.model_copy(update={"workers": [WorkerSpec.model_validate(BUILTIN_ECHO)]})
    return settings


def _read_yaml(file: Path, issues: list[ConfigIssue]) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        issues.append(ConfigIssue(str(file), "-", f"cannot read file: {exc.strerror or exc}"))
        return {}
    try:
        data = yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "-"
        issues.append(ConfigIssue(str(file), where, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        issues.append(ConfigIssue(str(file), "-", "the top level must be a mapping of keys"))
        return {}
    return data


def _read_workers_dir(wdir: Path, env: Mapping[str, str], issues: list[ConfigIssue]) -> list[tuple[dict, str]]:
    if not wdir.is_dir():
        issues.append(ConfigIssue(str(wdir), "workers_dir", "is not a directory"))
        return []
    found: list[tuple[dict, str]] = []
    for file in sorted([*wdir.glob("*.yaml"), *wdir.glob("*.yml")]):
        data = _expand_env(_read_yaml(file, issues), env, str(file), "", issues)
        if not data:
            continue
        try:
            WorkerSpec.model_validate(data)
        except ValidationError as exc:
            issues.extend(_issues_from(exc, str(file), data))
            continue
        found.append((data, str(file)))
    return found


def _expand_env(value: Any, env: Mapping[str, str], file: str, key: str, issues: list[ConfigIssue]) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is an issue, not an empty string."""
    if isinstance(value, dict):
        return {k: _expand_env(v, env, file, f"{key}.{k}" if key else str(k), issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, env, file, f"{key}[{i}]", issues) for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                issues.append(ConfigIssue(file, key, f"environment variable {name} is not set"))
                return match.group(0)  # left as written, so no second issue follows from an empty value
            return env[name]

        return _ENV_REF.sub(sub, value)
    return value


def _issues_from(exc: ValidationError, file: str, raw: Mapping[str, Any],
                 origins: Mapping[str, str] | None = None) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors():
        loc = list(err["loc"])
        # pydantic puts the failing model validator's tag in the location; drop non-key parts.
        parts: list[str] = []
        node: Any = raw
        for part in loc:
            if isinstance(part, int):
                name = node[part].get("name") if isinstance(node, list) and part < len(node) and isinstance(
                    node[part], dict) else None
                parts[-1:] = [f"{parts[-1] if parts else ''}[{part}]" + (f" ({name})" if name else "")]
                node = node[part] if isinstance(node, list) and part < len(node) else None
            else:
                parts.append(str(part))
                node = node.get(part) if isinstance(node, dict) else None
        key = ".".join(parts) or "-"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "missing":
            reason = "is required"
        top = str(loc[0]) if loc else ""
        issues.append(ConfigIssue((origins or {}).get(top, file), key, reason))
    return issues
