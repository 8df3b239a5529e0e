"""The pretraining recipe of the shipped models: `python -m rlsurvey.lm.pretrain --world WORLD`.

Survey section 2.2 of arXiv 2412.10400 (before RL there is a pretrained policy). Next-token prediction on a
world's corpus (reviews from the grammar, noisy arithmetic lines, or reasoning chains answered directly or
step by step), each example followed by EOS, with
AdamW (Loshchilov and Hutter, arXiv 1711.05101), linear warm-up and cosine decay. The result is a Hugging
Face directory (config.json, model.safetensors, tokenizer.json, README.md model card with measured quality,
metrics.json) written to a temporary sibling and renamed into place only when complete, so an interrupted
run never leaves a half-written model.

Determinism: the same config, seed and CPU thread count give the same weights (PyTorch CPU kernels are
deterministic for a fixed thread count).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlsurvey.assets import WORLD_MODEL
from rlsurvey.checks import check_fields
from rlsurvey.config_compat import renamed_fields, translate
from rlsurvey.evaluation import WORLDS  # the one tuple of the worlds, shared with the CLI and interop
from rlsurvey.lm.models import TinyLlamaConfig, tiny_llama
from rlsurvey.lm.quality import encode_texts, heldout_nll, padded_batch
from rlsurvey.lm.tokenizer import train_bpe_tokenizer, train_char_tokenizer
from rlsurvey.progress import tqdm
from rlsurvey.runtime import seed_everything

__all__ = ["PretrainConfig", "world_corpus", "pretrain", "main"]

DEFAULT_NAMES = WORLD_MODEL  # the shipped model each world's pretraining writes


@renamed_fields(lr="learning_rate", warmup="warmup_steps", grad_clip="max_grad_norm", eval_every="eval_steps")
@dataclass
class PretrainConfig:
    world: str = "reviews"  # "reviews", "arithmetic", "reasoning" or "tools"
    n_train: int = 20_000  # training examples drawn from the world (seed = `seed`)
    n_val: int = 2_000  # held-out examples (seed = `seed` + 1000): the perplexity in the model card
    steps: int = 800  # optimizer steps
    batch_size: int = 64  # examples per step
    learning_rate: float = 3e-3  # peak learning rate (tiny models tolerate a large one)
    warmup_steps: int = 100  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    max_grad_norm: float = 1.0  # max global gradient norm
    seed: int = 0  # seeds data, initialization and batch order
    vocab_size: int = 640  # BPE vocabulary bound for reviews (arithmetic is per character)
    wrong_fraction: float = 0.5  # arithmetic, reasoning, tools: fraction of direct answers that are wrong
    digits: int = 2  # arithmetic: operand digits
    worked_fraction: float = 0.3  # reasoning: fraction of corpus lines that are worked solutions
    tool_fraction: float = 0.3  # tools: fraction of corpus lines that call the calculator
    eval_steps: int = 250  # steps between held-out loss evaluations
    model: TinyLlamaConfig = field(default_factory=TinyLlamaConfig)  # architecture

    def __post_init__(self):
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {WORLDS}, got {self.world!r}")
        if isinstance(self.model, dict):
            self.model = TinyLlamaConfig(**self.model)
        for name in ("n_train", "n_val", "steps", "batch_size", "eval_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_fields(self, {
            "n_train": "int>=1", "n_val": "int>=1", "steps": "int>=1", "batch_size": "int>=1",
            "learning_rate": ">0", "warmup_steps": "int>=0", "weight_decay": ">=0", "max_grad_norm": ">0",
            "vocab_size": "int>=1", "wrong_fraction": "[0,1]", "digits": "int>=1", "worked_fraction": "[0,1]",
            "tool_fraction": "[0,1]", "eval_steps": "int>=1",
        })  # fmt: skip

    @classmethod
    def for_world(cls, world: str, **overrides) -> PretrainConfig:
        """The recipe of the shipped model of `world`, with any field overridden."""
        if world == "reasoning":  # a worked step must be learned in pretraining before RL can reward it
            base = dict(
                n_train=40_000,
                steps=3_000,
                learning_rate=4e-3,
                wrong_fraction=0.6,
                worked_fraction=0.3,
                model=TinyLlamaConfig(
                    hidden_size=128, num_hidden_layers=4, intermediate_size=256, max_position_embeddings=64
                ),
            )
        elif world == "tools":  # the call and the copy of its result must be reliable before RL rewards them
            base = dict(
                n_train=40_000,
                steps=4_000,
                learning_rate=4e-3,
                wrong_fraction=0.7,
                tool_fraction=0.35,
                model=TinyLlamaConfig(
                    hidden_size=128, num_hidden_layers=4, intermediate_size=256, max_position_embeddings=64
                ),
            )
        elif world == "arithmetic":
            base = dict(
                n_train=40_000,
                steps=4_500,
                learning_rate=4e-3,
                wrong_fraction=0.25,
                model=TinyLlamaConfig(
                    hidden_size=96, num_hidden_layers=3, intermediate_size=256, max_position_embeddings=32
                ),
            )
        else:
            base = dict(
                model=TinyLlamaConfig(
                    hidden_size=96, num_hidden_layers=3, intermediate_size=256, max_position_embeddings=96
                ),
            )
        overrides = translate(cls, overrides, stacklevel=2)  # old field names, with a FutureWarning
        return cls(world=world, **{**base, **overrides})


def world_corpus(config: PretrainConfig) -> tuple[list[str], list[str]]:
    """(train texts, held-out texts) of the config's world."""
    if config.world == "reviews":
        from rlsurvey.tasks.reviews import sample_reviews

        return sample_reviews(config.n_train, config.seed), sample_reviews(config.n_val, config.seed + 1000)
    if config.world == "reasoning":
        from rlsurvey.tasks.reasoning import make_corpus as reasoning_corpus

        kw = dict(worked_fraction=config.worked_fraction, wrong_fraction=config.wrong_fraction)
        return reasoning_corpus(config.n_train, config.seed, **kw), reasoning_corpus(
            config.n_val, config.seed + 1000, **kw
        )
    if config.world == "tools":
        from rlsurvey.tasks.tools import make_corpus as tools_corpus

        kw = dict(tool_fraction=config.tool_fraction, wrong_fraction=config.wrong_fraction)
        return tools_corpus(config.n_train, config.seed, **kw), tools_corpus(
            config.n_val, config.seed + 1000, **kw
        )
    from rlsurvey.tasks.arithmetic import make_corpus

    kw = dict(wrong_fraction=config.wrong_fraction, digits=config.digits)
    return make_corpus(config.n_train, config.seed, **kw), make_corpus(config.n_val, config.seed + 1000, **kw)


def pretrain(config: PretrainConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Train a tiny Llama on the config's world; save it to `out_dir` when given. Returns the history:
    {"step": [...], "train_loss": [...], "eval_step": [...], "val_loss": [...], "wall_s": float}."""
    seed_everything(config.seed)
    t0 = time.time()
    train_texts, val_texts = world_corpus(config)
    if config.world == "reviews":
        tokenizer = train_bpe_tokenizer(train_texts, config.vocab_size)
    elif config.world == "tools":  # the error observations' letters too, though the corpus never shows one
        from rlsurvey.tasks.tools import OBSERVATION_ALPHABET

        tokenizer = train_char_tokenizer([*train_texts, OBSERVATION_ALPHABET])
    else:
        tokenizer = train_char_tokenizer(train_texts)
    model = tiny_llama(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, config.model)
    rows = encode_texts(tokenizer, train_texts)
    longest = max(len(r) for r in rows)
    if longest > config.model.max_position_embeddings:
        raise ValueError(
            f"model.max_position_embeddings must cover the longest example ({longest} tokens), "
            f"got {config.model.max_position_embeddings}"
        )
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to 10% of the peak
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    gen = torch.Generator().manual_seed(config.seed)
    # the held-out loss of the random initialization is the baseline that "the loss falls" is measured against
    hist = {
        "step": [],
        "train_loss": [],
        "eval_step": [0],
        "val_loss": [heldout_nll(model, tokenizer, val_texts)],
    }
    bar = tqdm(range(config.steps), desc=f"pretrain {config.world}", disable=not progress)
    for step in bar:
        model.train()
        idx = torch.randint(len(rows), (config.batch_size,), generator=gen).tolist()
        ids, mask, labels = padded_batch([rows[i] for i in idx], tokenizer.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        opt.step()
        hist["step"].append(step)
        hist["train_loss"].append(loss.item())
        if (step + 1) % config.eval_steps == 0 or step == config.steps - 1:
            hist["eval_step"].append(step + 1)
            hist["val_loss"].append(heldout_nll(model, tokenizer, val_texts))
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{hist['val_loss'][-1]:.3f}")
    hist["wall_s"] = time.time() - t0
    model.eval()
    if out_dir is not None:
        save(model, tokenizer, config, hist, val_texts, Path(out_dir), progress=progress)
    return hist


def save(
    model, tokenizer, config: PretrainConfig, hist: dict, val_texts, out_dir: Path, progress: bool = True
):
    """Write model, tokenizer, metrics.json and the model card into `out_dir`, atomically."""
    from rlsurvey.lm.quality import measure_quality, model_card

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        quality = measure_quality(tmp, config, val_texts, progress=progress)
        metrics = {"config": asdict(config), "history": hist, "quality": quality}
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (tmp / "README.md").write_text(model_card(DEFAULT_NAMES[config.world], config, hist, quality))
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=WORLDS, required=True)
    parser.add_argument("--out", default=None, help="output directory (default: the shipped asset's)")
    parser.add_argument("--steps", type=int, default=None, help="override the number of optimizer steps")
    parser.add_argument("--n-train", type=int, default=None, help="override the number of training examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (fixed for determinism)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _main(args)
    finally:
        torch.set_num_threads(threads)  # called in-process (a test, a notebook): leave the caller's count


def _main(args: argparse.Namespace) -> dict:
    over = {k: v for k, v in (("steps", args.steps), ("n_train", args.n_train)) if v is not None}
    config = PretrainConfig.for_world(args.world, seed=args.seed, **over)
    if args.out is None:
        from rlsurvey.assets import ASSETS

        out = ASSETS / DEFAULT_NAMES[args.world]
    else:
        out = Path(args.out)
    hist = pretrain(config, out)
    print(f"saved {out} in {hist['wall_s']:.0f} s; held-out loss {hist['val_loss'][-1]:.4f}")
    return hist


if __name__ == "__main__":
    main()
