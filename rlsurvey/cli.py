"""`rlsurvey`: train a reward model, or a policy with PPO, RLOO, DPO or GRPO, from the command line.

    rlsurvey train reward --output-dir out/rm                       # Bradley-Terry RM on reviews pairs
    rlsurvey train ppo --reward out/rm --output-dir out/ppo          # PPO against that reward model
    rlsurvey train dpo --model Qwen/Qwen2.5-0.5B-Instruct --dataset trl-lib/ultrafeedback_binarized ...
    rlsurvey train grpo --output-dir out/grpo                       # GRPO on arithmetic with the verifier
    rlsurvey data --world reviews --type preference pairs.jsonl     # a world's data in TRL's format
    accelerate launch -m rlsurvey train dpo ...                      # several processes

Each subcommand's options are generated from its trainer's config dataclass (`rlsurvey.config_args`), the
same one the notebooks use: RewardTrainingConfig (section 4.1 of arXiv 2412.10400), RLHFPPOConfig (4.2),
the RLOO preset of GRPOConfig (4.2, arXiv 2402.14740), DPOConfig (7, arXiv 2305.18290), GRPOConfig (3,
arXiv 2402.03300). Without `--model` or `--dataset` a run uses a shipped tiny model and data generated from
a synthetic world, so every command works offline.

The output directory holds a Hugging Face checkpoint (safetensors and tokenizer) loadable by plain
transformers (`AutoModelForCausalLM`, or `AutoModelForSequenceClassification` for a reward model),
`metrics.jsonl` (one JSON object per step, TRL's metric names) and `train_config.json` (the command, its
inputs and every config field). Under several processes (`WORLD_SIZE` > 1) only the main process writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from rlsurvey.config_args import add_config_arguments, config_from_args

__all__ = ["COMMANDS", "build_parser", "is_main_process", "main"]

# Config fields bound to the common options instead of options of their own.
BOUND = {"seed": "--seed", "output_dir": "--output-dir", "checkpoint_dir": "--output-dir"}


@dataclasses.dataclass
class Command:
    config: type  # the config dataclass
    defaults: Callable[[], object]  # its default instance (a preset for RLOO)
    world: str  # the synthetic world used without --model / --dataset
    data: str  # "preference" or "prompt"
    about: str  # one line for --help
    choices: dict = dataclasses.field(default_factory=dict)  # allowed values of str fields


def _commands() -> dict[str, Command]:
    from rlsurvey.algos.dpo_trainer import ALL_LOSS_TYPES, DPOConfig
    from rlsurvey.algos.grpo import ADVANTAGES, GRPOConfig
    from rlsurvey.algos.policy_loss import AGGREGATIONS
    from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig
    from rlsurvey.algos.rloo import rloo_config
    from rlsurvey.rewards.bradley_terry import RewardTrainingConfig

    group = {"aggregation": AGGREGATIONS, "kl_estimator": ("k1", "k2", "k3")}
    return {
        "reward": Command(
            RewardTrainingConfig, RewardTrainingConfig, "reviews", "preference",
            "a Bradley-Terry reward model on preference pairs (survey 4.1)",
        ),
        "ppo": Command(
            RLHFPPOConfig, RLHFPPOConfig, "reviews", "prompt",
            "PPO with a value model and a KL penalty to the reference (survey 4.2)",
            {"kl_estimator": ("k1", "k3")},
        ),
        "rloo": Command(
            GRPOConfig, rloo_config, "reviews", "prompt",
            "RLOO: REINFORCE with a leave-one-out baseline (survey 4.2, arXiv 2402.14740)",
            {"advantage": ("rloo",), **group},
        ),
        "dpo": Command(
            DPOConfig, DPOConfig, "reviews", "preference",
            "DPO and its family of offline preference losses (survey 7 and 8)",
            {"loss_type": ALL_LOSS_TYPES, "lr_scheduler": ("linear", "constant")},
        ),
        "grpo": Command(
            GRPOConfig, GRPOConfig, "arithmetic", "prompt",
            "GRPO / Dr. GRPO with group advantages, e.g. on a verifier (survey 3)",
            {"advantage": ADVANTAGES, **group},
        ),
    }  # fmt: skip


COMMANDS = ("reward", "ppo", "rloo", "dpo", "grpo")
WORLD_MODEL = {"reviews": "reviews-base", "arithmetic": "arith-base"}
WORLD_REWARD = {"reviews": "gold", "arithmetic": "verifier"}


def _common(p: argparse.ArgumentParser, name: str, cmd: Command) -> None:
    g = p.add_argument_group("inputs and outputs")
    g.add_argument(
        "--output-dir", required=True,
        help="where the run writes: the trained model as a Hugging Face directory (safetensors + tokenizer), "
        "metrics.jsonl (one JSON object per step) and train_config.json; also the config's "
        + ("checkpoint_dir" if cmd.config.__name__ == "GRPOConfig" else "output_dir")
        + " (checkpoint-<step> directories when saving during training)",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=int, default=0, help="seeds torch, the generated data and the config's seed"
    )
    g.add_argument(
        "--world", choices=sorted(WORLD_MODEL), default=cmd.world,
        help=f"the synthetic world that supplies the default model, data and reward [default: {cmd.world}]",
    )  # fmt: skip
    model_help = (
        "the model to train: a shipped name (reviews-base, arith-base), a local HF directory or a hub id"
    )
    if name == "reward":
        model_help = (
            "the backbone of the reward model (a fresh zero head is added), or a reward-model directory"
        )
    g.add_argument("--model", default=None, help=model_help + " [default: the world's shipped model]")
    kind = (
        "preference pairs (prompt/chosen/rejected, standard or conversational)"
        if cmd.data == "preference"
        else "prompts (a 'prompt' column, strings or messages)"
    )
    g.add_argument(
        "--dataset", default=None,
        help=f"{kind}: a .jsonl/.json/.parquet file, a save_to_disk directory or a hub id "
        "[default: generated from the world]",
    )  # fmt: skip
    g.add_argument("--split", default="train", help="split of a dataset dict or hub dataset [default: train]")
    g.add_argument(
        "--num-examples", type=int, default=None,
        help="how many examples to generate from the world, or to keep from --dataset "
        "[default: 2000 generated pairs or prompts; all of a dataset]",
    )  # fmt: skip
    if cmd.data == "prompt":
        g.add_argument(
            "--reward", default=None,
            help="the reward: 'gold' (the reviews world's true reward), 'verifier' (the arithmetic world's "
            "exact-match check) or a reward-model directory, e.g. one written by `rlsurvey train reward` "
            "[default: the world's, gold or verifier]",
        )  # fmt: skip
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... [default: CUDA when present]")
    g.add_argument(
        "--trust-remote-code", action="store_true", help="allow a hub model's own code (off by default)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The `rlsurvey` parser: `train {reward,ppo,rloo,dpo,grpo}` and `data`."""
    parser = argparse.ArgumentParser(
        prog="rlsurvey", description="Train reward models and RL policies for language models (rlsurvey)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a reward model or a policy", description="Train a model.")
    algos = train.add_subparsers(dest="algo", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, cmd in _commands().items():
        p = algos.add_parser(name, help=cmd.about, description=f"rlsurvey train {name}: {cmd.about}.")
        _common(p, name, cmd)
        add_config_arguments(
            p, cmd.config, cmd.defaults(), skip=BOUND, choices=cmd.choices,
            title=f"{cmd.config.__name__} fields" + (" (RLOO preset)" if name == "rloo" else ""),
        )  # fmt: skip
    data = sub.add_parser(
        "data", help="write a synthetic world's data in TRL's dataset formats",
        description="Write a world's preference, unpaired or prompt-only data as TRL reads it.",
    )  # fmt: skip
    data.add_argument("path", help="output: .jsonl, .json, .parquet, or a directory (save_to_disk)")
    data.add_argument(
        "--world", choices=["reviews", "arithmetic"], default="reviews", help="[default: reviews]"
    )
    data.add_argument(
        "--type", dest="data_type", choices=["preference", "unpaired", "prompt"], default="preference",
        help="preference (prompt/chosen/rejected), unpaired (prompt/completion/label) or prompt "
        "(prompt only) [default: preference]",
    )  # fmt: skip
    data.add_argument("--conversational", action="store_true", help="messages instead of plain strings")
    data.add_argument("-n", "--num-examples", type=int, default=1000, help="rows (pairs) [default: 1000]")
    data.add_argument("--seed", type=int, default=0, help="[default: 0]")
    return parser


# ----------------------------------------------------------------------------------------------------------
# Processes, devices, files
# ----------------------------------------------------------------------------------------------------------


def is_main_process() -> bool:
    """True on the process that writes files: rank 0 under `accelerate launch` or torchrun (which set
    RANK in every process they start), or a process started alone."""
    return int(os.environ.get("RANK", "0")) == 0


def _device(args) -> torch.device:
    from rlsurvey.runtime import default_device

    if args.device is None and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}")  # one GPU per process
    return default_device(args.device)


def _clean(value):
    """JSON-safe: tensors and numpy numbers to Python, NaN and infinities to null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog:
    """Appends one JSON object per step to `<output_dir>/metrics.jsonl` (a no-op off the main process)."""

    def __init__(self, output_dir: Path, enabled: bool):
        self.path = output_dir / "metrics.jsonl"
        self.enabled, self.count = enabled, 0
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def write(self, row: dict) -> None:
        self.count += 1
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(_clean(row)) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def _num(args, default: int = 2000) -> int:
    n = args.num_examples
    if n is not None and n < 1:
        raise SystemExit(f"rlsurvey: --num-examples must be a positive int, got {n}")
    return default if n is None else n


def _preferences(args, tokenizer):
    from rlsurvey.data import load_preferences
    from rlsurvey.tasks import reviews

    if args.dataset is None:
        if args.world != "reviews":
            raise SystemExit(
                f"rlsurvey: the {args.world} world has no preference pairs; pass --dataset or --world reviews"
            )
        return reviews.make_preferences(_num(args), seed=args.seed)
    ds = load_preferences(args.dataset, split=args.split, tokenizer=tokenizer)
    return ds.select(range(min(len(ds), args.num_examples))) if args.num_examples else ds


def _prompts(args, tokenizer) -> list[str]:
    from rlsurvey.interop import load_prompts, world_dataset

    if args.dataset is None:
        return list(world_dataset(args.world, "prompt", _num(args), seed=args.seed)["prompt"])
    return load_prompts(args.dataset, split=args.split, tokenizer=tokenizer, limit=args.num_examples)


def _reward(args, device):
    """(reward_fn, gold_fn or None, description)."""
    from rlsurvey.tasks import arithmetic, reviews

    spec = args.reward or WORLD_REWARD[args.world]
    gold = (lambda p, c: reviews.gold_reward(c, p)) if args.world == "reviews" else None
    if spec == "gold":
        if args.world != "reviews":
            raise SystemExit("rlsurvey: --reward gold is the reviews world's reward; use --world reviews")
        return gold, None, "gold"
    if spec == "verifier":
        if args.world != "arithmetic":
            raise SystemExit("rlsurvey: --reward verifier checks arithmetic answers; use --world arithmetic")
        return arithmetic.verify, None, "verifier"
    if not Path(spec).is_dir():
        raise SystemExit(
            f"rlsurvey: --reward must be 'gold', 'verifier' or a reward-model directory, got {spec!r}"
        )
    from rlsurvey.rewards.reward_model import RewardModel

    rm = RewardModel.from_pretrained(spec).to(device).eval().requires_grad_(False)
    return rm, gold if args.dataset is None else None, str(spec)


def _model_name(args) -> str:
    return args.model or WORLD_MODEL[args.world]


# ----------------------------------------------------------------------------------------------------------
# The commands
# ----------------------------------------------------------------------------------------------------------


def _config(cmd: Command, args, main: bool, output_dir: Path):
    names = {f.name for f in dataclasses.fields(cmd.config)}
    fixed = {"seed": args.seed} if "seed" in names else {}
    if "progress" in names and not main:
        fixed["progress"] = False
    if "output_dir" in names:  # the trainer's own checkpoints, written by the main process only
        # PPO's trainer saves into output_dir at the end too; the CLI saves the final model itself
        saves = main and getattr(args, "save_every", 1) != 0
        fixed["output_dir"] = str(output_dir) if saves else None
        if not main and "save_steps" in names:
            fixed["save_steps"] = None
    if "checkpoint_dir" in names:
        fixed["checkpoint_dir"] = str(output_dir) if main else None
    try:
        return config_from_args(cmd.config, args, cmd.defaults(), **fixed)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"rlsurvey train {args.algo}: {exc}") from exc


def _save_model(model, tokenizer, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def train(args) -> dict:
    """Run `rlsurvey train <algo>` from parsed options; returns a summary (paths, steps, last metrics)."""
    from rlsurvey.lm.models import load_model

    cmd = _commands()[args.algo]
    main = is_main_process()
    out = Path(args.output_dir)
    torch.manual_seed(args.seed)
    device = _device(args)
    cfg = _config(cmd, args, main, out)
    log = MetricsLog(out, main)
    record = {"command": f"train {args.algo}", "model": _model_name(args), "dataset": args.dataset,
              "world": args.world, "seed": args.seed, "num_examples": args.num_examples,
              "processes": int(os.environ.get("WORLD_SIZE", "1"))}  # fmt: skip
    if args.algo == "reward":
        from rlsurvey.assets import SHIPPED_MODELS, model_path
        from rlsurvey.rewards.bradley_terry import train_reward_model
        from rlsurvey.rewards.reward_model import RewardModel

        name = _model_name(args)
        where = model_path(name) if name in SHIPPED_MODELS else name
        rm = RewardModel.from_pretrained(where, trust_remote_code=args.trust_remote_code).to(device)
        data = _preferences(args, rm.tokenizer)
        history = train_reward_model(rm, data, cfg)
        for i, row in enumerate(history, 1):
            log.write({"step": i, **row})
        if main:
            rm.save_pretrained(out)
    else:
        model, tok = load_model(_model_name(args), device=device, trust_remote_code=args.trust_remote_code)
        if args.algo == "dpo":
            from rlsurvey.algos.dpo_trainer import DPOTrainer

            trainer = DPOTrainer(model, tok, _preferences(args, tok), cfg)
            history = trainer.train()
            for row in history:
                log.write(row)
            trainer.save(out)  # on every process: the main one writes, the others wait at its barrier
        else:
            prompts = _prompts(args, tok)
            reward_fn, gold_fn, record["reward"] = _reward(args, device)
            if args.algo == "ppo":
                from rlsurvey.algos.rlhf_ppo import RLHFPPOTrainer

                trainer = RLHFPPOTrainer(model, tok, reward_fn, cfg, gold_fn=gold_fn)
                history = trainer.train(prompts, callback=lambda _t, row: log.write(row))
                if main:
                    _save_model(trainer.policy, tok, out)
                    trainer.value_model.save_pretrained(out / "value")
            else:
                from rlsurvey.algos.grpo import train_grpo

                history = train_grpo(model, tok, prompts, reward_fn, cfg)
                for row in history:
                    log.write(row)
                if main and not (out / "config.json").is_file():  # train_grpo saves to checkpoint_dir
                    _save_model(model, tok, out)
    record["config"] = dataclasses.asdict(cfg)
    record["steps"] = log.count
    if main:
        (out / "train_config.json").write_text(json.dumps(_clean(record), indent=2))
    return {"output_dir": str(out), "steps": log.count, "last": history[-1] if history else {}}


def export_data(args) -> Path:
    """`rlsurvey data`: a world's data in a TRL format, written to `args.path`."""
    from rlsurvey.interop import save_dataset, world_dataset

    try:
        ds = world_dataset(args.world, args.data_type, args.num_examples, args.seed, args.conversational)
    except ValueError as exc:
        raise SystemExit(f"rlsurvey data: {exc}") from exc
    return save_dataset(ds, args.path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rlsurvey` command (and `python -m rlsurvey`)."""
    args = build_parser().parse_args(argv)
    if args.command == "data":
        path = export_data(args)
        print(f"wrote {args.num_examples} {args.data_type} rows of the {args.world} world to {path}")
        return 0
    summary = train(args)
    if is_main_process():
        last = {k: v for k, v in summary["last"].items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(last.items())[:6])
        print(f"{args.algo}: {summary['steps']} steps, model in {summary['output_dir']}; last: {shown}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
