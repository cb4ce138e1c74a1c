"""What a host's lists offer, read from the daemon's hello (``Session.info``): the models,
upscalers, LoRAs and ControlNets it has, and the limits its number fields take; and the
words the LoRA list shows for them. Plain functions of the hello (a dict), so every host
and every test reads it the same way. Standard library only: the hosts import it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .limits import Limits


@dataclass(frozen=True)
class Offer:
    """A list whose choices the daemon's hello fills: under which key, and what the empty
    choice (the daemon decides) is called."""

    key: str
    empty: str


#: what -> its offer. "model" and "upscaler" are the parameter rows with ``from_daemon``;
#: "controlnet" is a control's ``model`` (see plugin.editors)
OFFERS: dict[str, Offer] = {
    "model": Offer("models", "Daemon default"),
    "upscaler": Offer("upscalers", "Lanczos (no upscaler model)"),
    "controlnet": Offer("controlnets", "Auto"),
}


def names(info: dict[str, Any] | None, key: str) -> list[str]:
    """The names the hello lists under ``key``: plain strings or objects with a "name";
    anything else (an older or odd daemon) is left out."""
    listed = (info or {}).get(key)
    if not isinstance(listed, list):
        return []
    out = [n if isinstance(n, str) else n.get("name") if isinstance(n, dict) else None
           for n in listed]
    return [n for n in out if isinstance(n, str)]


def choices(info: dict[str, Any] | None, what: str, wanted: str | None = None
            ) -> list[tuple[str, str]]:
    """(value, label) for a list the daemon fills (``what``, a key of :data:`OFFERS`): the
    empty choice first (the daemon's default model, no upscaler model, any ControlNet for
    the type), then what the hello lists, and ``wanted`` (the stored choice) even when
    this daemon does not offer it."""
    offer = OFFERS[what]
    empty = offer.empty
    default = (info or {}).get("default_model") if what == "model" else None
    if default:
        empty = f"{empty} ({default})"
    offered = names(info, offer.key)
    out = [("", empty)] + [(n, n) for n in offered]
    if wanted and wanted not in offered:
        out.append((wanted, f"{wanted} (not offered)"))
    return out


def loras(info: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The LoRAs the daemon offers (name, arch, trigger words), from its hello."""
    listed = (info or {}).get("loras")
    return [lo for lo in listed if isinstance(lo, dict) and isinstance(lo.get("name"), str)
            ] if isinstance(listed, list) else []


def limits(info: dict[str, Any] | None) -> Limits | None:
    """The daemon's announced limits (the number fields' ranges); None while there is no
    hello or it holds none that make sense."""
    given = (info or {}).get("limits")
    if not isinstance(given, dict):
        return None
    known = {f.name for f in fields(Limits)}
    try:
        return Limits(**{k: v for k, v in given.items() if k in known})
    except TypeError:
        return None


def has_feature(info: dict[str, Any] | None, feature: str) -> bool:
    """Whether the hello lists ``feature`` (e.g. "live")."""
    features = (info or {}).get("features")
    return isinstance(features, list) and feature in features


# ------------------------------------------------------------------ the LoRA list's words

def add_lora_text(offered: list[dict[str, Any]]) -> str:
    """The first entry of the "Add LoRA" list."""
    return "Add LoRA…" if offered else "Add LoRA… (the daemon has none)"


def lora_entry(lora: dict[str, Any]) -> str:
    """One offered LoRA in the "Add LoRA" list: its name and architecture."""
    return f"{lora['name']}  [{lora.get('arch') or '?'}]"


def triggers(offered: list[dict[str, Any]], name: str) -> list[str]:
    """The trigger words of the offered LoRA called ``name`` ([] when none or not offered)."""
    lora = next((lo for lo in offered if lo["name"] == name), None)
    words = (lora or {}).get("triggers")
    return [w for w in words if isinstance(w, str)] if isinstance(words, list) else []


def describe_lora(offered: list[dict[str, Any]], name: str) -> str:
    """A LoRA row's tooltip: its architecture and trigger words, or that the daemon does
    not offer it (a stored setting from another daemon)."""
    lora = next((lo for lo in offered if lo["name"] == name), None)
    if lora is None:
        return f"{name}: this daemon does not offer it"
    words = ", ".join(triggers(offered, name)) or "none"
    return f"{name} [{lora.get('arch') or '?'}]; trigger words: {words}"


def trigger_text(offered: list[dict[str, Any]], name: str, most: int = 3) -> str:
    """What the "T" button puts into the prompt: the first few trigger words ("" if none)."""
    return ", ".join(triggers(offered, name)[:most])


def prompt_with(prompt: str, words: str) -> str:
    """The prompt with ``words`` at its end, unless it holds them already."""
    text = prompt.rstrip()
    if not words or words.lower() in text.lower():
        return prompt
    return f"{text}, {words}" if text else words
