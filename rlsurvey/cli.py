"""`rlsurvey`: train a reward model, or a policy with PPO, RLOO, DPO or GRPO, from the command line.

    rlsurvey train reward --output-dir out/rm                       # Bradley-Terry RM on reviews pairs
    rlsurvey train ppo --reward out/rm --output-dir out/ppo          # PPO against that reward model
    rlsurvey train dpo --model Qwen/Qwen2.5-0.5B-Instruct --dataset trl-lib/ultrafeedback_binarized ...
    rlsurvey train grpo --output-dir out/grpo                       # GRPO on arithmetic with the verifier
    rlsurvey train grpo --tool calculator --output-dir out/agent    # tool-base, episodes with a calculator
    rlsurvey train sft --output-dir out/sft                         # SFT on worked solutions (reasoning)
    rlsurvey train prm --output-dir out/prm                         # a process RM on exact step labels
    rlsurvey data --world reviews --type preference pairs.jsonl     # a world's data in TRL's format
    rlsurvey eval --model out/dpo reviews-base --world reviews      # held-out gold reward, side by side
    accelerate launch -m rlsurvey train dpo ...                      # several processes

Each subcommand's options are generated from its trainer's config dataclass (`rlsurvey.config_args`), the
same one the notebooks use: SFTConfig (RLHF's first stage, R1's cold start), RewardTrainingConfig (section
4.1 of arXiv 2412.10400), RLHFPPOConfig (4.2), the RLOO preset of GRPOConfig (4.2, arXiv 2402.14740),
DPOConfig (7, arXiv 2305.18290), GRPOConfig (3, arXiv 2402.03300), StepRewardConfig (process and outcome
reward models, arXiv 2305.20050, chapter 15). Without `--model` or `--dataset` a run
uses a shipped tiny model and data generated from a synthetic world, so every command works offline.

The output directory holds a Hugging Face checkpoint (safetensors and tokenizer) loadable by plain
transformers (`AutoModelForCausalLM`; `AutoModelForSequenceClassification` for a reward model,
`AutoModelForTokenClassification` for a step reward model),
`metrics.jsonl` (one JSON object per step, TRL's metric names) and `train_config.json` (the command, its
inputs and every config field). On a synthetic world a run ends with a held-out report, printed and
written to `results.json`: the starting and the trained model scored by the world's truth on prompts that
never entered training (`rlsurvey.evaluation`). Under several processes (`WORLD_SIZE` > 1) only the main
process writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from rlsurvey.checkpoint import REPORT_TO, MetricsFile, TrainingInterrupted, json_safe
from rlsurvey.cli_checks import (
    check_args,
    check_data_args,
    debug_requested,
    error_line,
    fit_prompts,
    model_context,
    reward_spec,
)
from rlsurvey.cli_report import DEFAULT_MAX_NEW_TOKENS, WORLD_MODEL, add_eval_parser, run_eval, train_report
from rlsurvey.config_args import add_config_arguments, config_from_args
from rlsurvey.evaluation import WORLDS, training_pairs, training_prompts

__all__ = ["COMMANDS", "build_parser", "is_main_process", "main"]

# Config fields bound to the common options instead of options of their own.
BOUND = {"seed": "--seed", "output_dir": "--output-dir"}


# The command line keeps the newest 3 checkpoints unless told otherwise (--save-total-limit none keeps all);
# in Python the configs keep every checkpoint, as TRL's do.
CLI_SAVE_TOTAL_LIMIT = 3


@dataclasses.dataclass
class Command:
    config: type  # the config dataclass
    preset: Callable[[], object]  # its default instance in Python (a preset for RLOO)
    world: str  # the synthetic world used without --model / --dataset
    data: str  # "preference", "prompt" or "sft" (prompt-completion demonstrations)
    about: str  # one line for --help
    choices: dict = dataclasses.field(default_factory=dict)  # allowed values of str fields
    overrides: dict = dataclasses.field(default_factory=dict)  # the command line's defaults that differ

    def defaults(self):
        """The preset with the command line's own defaults on top."""
        return dataclasses.replace(self.preset(), save_total_limit=CLI_SAVE_TOTAL_LIMIT, **self.overrides)


def _commands() -> dict[str, Command]:
    from rlsurvey.algos.dpo_trainer import ALL_LOSS_TYPES, DPOConfig
    from rlsurvey.algos.grpo import ADVANTAGES, GRPOConfig
    from rlsurvey.algos.policy_loss import AGGREGATIONS, IMPORTANCE_LEVELS, LOSS_TYPES, SAMPLER_CORRECTIONS
    from rlsurvey.algos.rlhf_ppo import RLHFPPOConfig
    from rlsurvey.algos.rloo import rloo_config
    from rlsurvey.algos.sft import SFTConfig
    from rlsurvey.rewards.bradley_terry import RewardTrainingConfig
    from rlsurvey.rewards.process import KINDS, StepRewardConfig

    group = {"aggregation": AGGREGATIONS, "kl_estimator": ("k1", "k2", "k3"), "loss_type": LOSS_TYPES,
             "importance_sampling_level": IMPORTANCE_LEVELS,
             "sampler_correction": SAMPLER_CORRECTIONS}  # fmt: skip
    return {
        "sft": Command(
            SFTConfig, SFTConfig, "reasoning", "sft",
            "supervised fine-tuning on demonstrations, completion tokens only (survey 4; R1's cold start)",
            {"lr_scheduler": ("linear", "constant")},
        ),
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
            # GRPOConfig's 50 steps at 1e-4 moved the arithmetic world's held-out accuracy by 2.3 standard
            # errors (1e-3 broke it); 200 steps at 3e-4 take 15 s and clear 3 (benchmarks/cli_defaults.py)
            {"learning_rate": 3e-4, "steps": 200},
        ),
        "prm": Command(
            StepRewardConfig, StepRewardConfig, "reasoning", "steps",
            "a process (or with --kind orm an outcome) reward model on the reasoning world's step labels",
            {"kind": KINDS, "lr_scheduler": ("linear", "constant")},
        ),
    }  # fmt: skip


COMMANDS = ("sft", "reward", "ppo", "rloo", "dpo", "grpo", "prm")
DEBUG_HELP = "on an error, show the full traceback instead of one line (also: RLSURVEY_DEBUG=1)"
WORLD_REWARD = {"reviews": "gold", "arithmetic": "verifier", "reasoning": "verifier", "tools": "verifier"}
TRAIN_WORLDS = ("arithmetic", "reasoning", "reviews")  # --world of `rlsurvey train`; --tool picks "tools"


def _common(p: argparse.ArgumentParser, name: str, cmd: Command) -> None:
    g = p.add_argument_group("inputs and outputs")
    g.add_argument(
        "--output-dir", required=True,
        help="where the run writes: the trained model as a Hugging Face directory (safetensors + tokenizer), "
        "metrics.jsonl (one JSON object per step) and train_config.json; also the config's output_dir "
        "(checkpoint-<step> directories when saving during training)",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=int, default=0, help="seeds torch, the generated data and the config's seed"
    )
    g.add_argument(
        "--world", choices=TRAIN_WORLDS, default=cmd.world,
        help=f"the synthetic world that supplies the default model, data and reward [default: {cmd.world}]"
        + ("; --tool calculator trains on the tools world instead" if name == "grpo" else ""),
    )  # fmt: skip
    model_help = (
        "the model to train: a shipped name (reviews-base, arith-base, reason-base, tool-base), a local HF "
        "directory or a hub id"
    )
    if name == "reward":
        model_help = (
            "the backbone of the reward model (a fresh zero head is added), or a reward-model directory"
        )
    if name == "prm":
        model_help = (
            "the policy that writes the labelled responses, also the backbone of the step reward model"
        )
    g.add_argument("--model", default=None, help=model_help + " [default: the world's shipped model]")
    kind = {
        "preference": "preference pairs (prompt/chosen/rejected, standard or conversational)",
        "prompt": "prompts (a 'prompt' column, strings or messages)",
        "sft": "demonstrations (prompt/completion strings or messages, a 'messages' column, or 'text')",
        "steps": "not read: responses are sampled from --model on the reasoning world and labelled exactly",
    }[cmd.data]
    g.add_argument(
        "--dataset", default=None,
        help=f"{kind}: a .jsonl/.json/.parquet file, a save_to_disk directory or a hub id "
        "[default: generated from the world]",
    )  # fmt: skip
    g.add_argument("--split", default="train", help="split of a dataset dict or hub dataset [default: train]")
    g.add_argument(
        "--num-examples", type=int, default=None,
        help="how many examples to generate from the world, or to keep from --dataset "
        "[default: 2000 generated pairs, prompts or demonstrations; all of a dataset]",
    )  # fmt: skip
    if cmd.data == "prompt":
        g.add_argument(
            "--reward", default=None,
            help="the reward: 'gold' (the reviews world's true reward), 'verifier' (the arithmetic or "
            "reasoning world's strict answer check) or a reward-model directory, e.g. one written by "
            "`rlsurvey train reward` [default: the world's, gold or verifier]",
        )  # fmt: skip
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... [default: CUDA when present]")
    g.add_argument(
        "--trust-remote-code", action="store_true", help="allow a hub model's own code (off by default)"
    )
    g.add_argument(
        "--overwrite-output-dir", action="store_true",
        help="replace an earlier run's outputs in --output-dir (without it, such a directory is refused)",
    )  # fmt: skip
    g.add_argument(
        "--report-to", nargs="+", default=["none"], choices=REPORT_TO,
        help="also send each logged row to these trackers, where installed (transformers' report_to names) "
        "[default: none]",
    )  # fmt: skip
    g.add_argument(
        "--no-report", action="store_true",
        help="skip the held-out report at the end (the starting and the trained model scored by the world's "
        "truth on prompts never trained on, also written to results.json)",
    )  # fmt: skip
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    if name == "grpo":
        t = p.add_argument_group(
            "tools (multi-turn episodes, rlsurvey.tasks.tools and rlsurvey.algos.multiturn)"
        )
        t.add_argument(
            "--tool", choices=["calculator"], default=None,
            help="play multi-turn episodes in which the policy may call this tool, on the tool world's "
            "problems with its verifier (unless --dataset or a reward-model --reward), from tool-base unless "
            "--model names another model whose vocabulary holds the call syntax '<37*58>{2146}'; the tool's "
            "observations are left out of the loss, the KL and the entropy; --max-new-tokens bounds the "
            f"whole episode [default {DEFAULT_MAX_NEW_TOKENS['tools']} with a tool; without: single-turn "
            "responses, no tool]",
        )  # fmt: skip
        t.add_argument(
            "--max-turns", type=int, default=3,
            help="with --tool: the most policy turns per episode (at most this minus one calls are answered) "
            "[default: 3]",
        )  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (a subcommand's usage runs to dozens of lines)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `rlsurvey` parser: `train {sft,reward,ppo,rloo,dpo,grpo}` and `data`."""
    parser = _Parser(
        prog="rlsurvey", description="Train reward models and RL policies for language models (rlsurvey)."
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="fine-tune a model, or train a reward model or a policy", description="Train a model."
    )
    algos = train.add_subparsers(dest="algo", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, cmd in _commands().items():
        p = algos.add_parser(name, help=cmd.about, description=f"rlsurvey train {name}: {cmd.about}.")
        _common(p, name, cmd)
        add_config_arguments(
            p, cmd.config, cmd.defaults(), skip=BOUND, choices=cmd.choices,
            title=f"{cmd.config.__name__} fields" + (" (RLOO preset)" if name == "rloo" else ""),
        )  # fmt: skip
    add_eval_parser(sub, DEBUG_HELP)
    data = sub.add_parser(
        "data", help="write a synthetic world's data in TRL's dataset formats",
        description="Write a world's preference, unpaired or prompt-only data as TRL reads it.",
    )  # fmt: skip
    data.add_argument("path", help="output: .jsonl, .json, .parquet, or a directory (save_to_disk)")
    data.add_argument(
        "--world",
        choices=list(WORLDS),
        default="reviews",
        help="[default: reviews] (tools: prompts only)",
    )
    data.add_argument(
        "--type", dest="data_type", choices=["preference", "unpaired", "prompt", "sft"], default="preference",
        help="preference (prompt/chosen/rejected), unpaired (prompt/completion/label), prompt (prompt only) "
        "or sft (prompt/completion demonstrations) [default: preference]",
    )  # fmt: skip
    data.add_argument("--conversational", action="store_true", help="messages instead of plain strings")
    data.add_argument("-n", "--num-examples", type=int, default=1000, help="rows (pairs) [default: 1000]")
    data.add_argument("--seed", type=int, default=0, help="[default: 0]")
    data.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
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


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------


def _num(args, default: int = 2000) -> int:
    n = args.num_examples
    if n is not None and n < 1:
        raise SystemExit(f"rlsurvey: --num-examples {n}: expected a positive int")
    return default if n is None else n


def _without_heldout(n: int, make):
    """`n` examples of a world with the held-out prompts left out (`rlsurvey.evaluation`): `make(k)` generates
    k and drops the held-out ones (about a fifth), so generate more until n remain."""
    k = n + n // 2 + 8
    while True:
        rows = make(k)
        if len(rows) >= n:
            return rows[:n] if isinstance(rows, list) else rows.select(range(n))
        k *= 2


def _preferences(args, tokenizer):
    from rlsurvey.data import load_preferences
    from rlsurvey.tasks import reviews

    if args.dataset is None:
        if args.world != "reviews":
            raise SystemExit(
                f"rlsurvey: the {args.world} world has no preference pairs; pass --dataset or --world reviews"
            )
        return _without_heldout(
            _num(args), lambda k: training_pairs(reviews.make_preferences(k, seed=args.seed))
        )
    ds = load_preferences(args.dataset, split=args.split, tokenizer=tokenizer)
    _num(args)
    return ds.select(range(min(len(ds), args.num_examples))) if args.num_examples is not None else ds


def _demonstrations(args):
    from rlsurvey.data import load_sft
    from rlsurvey.interop import demonstrations

    if args.dataset is None:
        return _without_heldout(
            _num(args), lambda k: training_pairs(demonstrations(args.world, k, seed=args.seed))
        )
    ds = load_sft(args.dataset, split=args.split)
    _num(args)
    return ds.select(range(min(len(ds), args.num_examples))) if args.num_examples is not None else ds


def _prompts(args, tokenizer) -> list[str]:
    from rlsurvey.interop import load_prompts, world_dataset

    if args.dataset is None:
        prompts = _without_heldout(
            _num(args),
            lambda k: training_prompts(world_dataset(args.world, "prompt", k, seed=args.seed)["prompt"]),
        )
    else:
        _num(args)
        prompts = load_prompts(args.dataset, split=args.split, tokenizer=tokenizer, limit=args.num_examples)
    limit = model_context(_model_name(args))
    if limit is None:
        return prompts
    source = f"--dataset {args.dataset}" if args.dataset else f"the {args.world} world"
    return fit_prompts(prompts, tokenizer, limit - args.max_new_tokens, source)


def _reward(args, device):
    """(reward_fn, gold_fn or None, description)."""
    from rlsurvey.tasks import arithmetic, reasoning, reviews

    spec = reward_spec(args)  # checked against the world; a directory that is there
    gold = (lambda p, c: reviews.gold_reward(c, p)) if args.world == "reviews" else None
    if spec == "gold":
        return gold, None, "gold"
    if spec == "verifier" and args.world == "tools":
        from rlsurvey.tasks import tools

        return tools.accuracy_reward, None, "verifier (tools)"
    if spec == "verifier":
        check = arithmetic.verify if args.world == "arithmetic" else reasoning.accuracy_reward
        return check, None, "verifier"
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
        # PPO's trainer also saves a checkpoint at the end when it has an output_dir: only with --save-steps
        saves = main and (args.algo != "ppo" or getattr(args, "save_steps", None) is not None)
        fixed["output_dir"] = str(output_dir) if saves else None
        if not main and "save_steps" in names:
            fixed["save_steps"] = None
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
    if getattr(args, "tool", None):
        if args.max_turns < 1:
            raise SystemExit(
                f"rlsurvey train grpo: --tool {args.tool} needs --max-turns >= 1, got {args.max_turns}"
            )
        args.world = "tools"  # its problems, its verifier, its shipped model and its held-out report
        if "--max-new-tokens" not in getattr(args, "given_options", ()):  # room for a call, its result, EOS
            args.max_new_tokens = DEFAULT_MAX_NEW_TOKENS["tools"]
    check_args(args)  # every input, before a model is loaded or a file written (rlsurvey.cli_checks)

    cmd = _commands()[args.algo]
    main = is_main_process()
    out = Path(args.output_dir)
    resume = getattr(args, "resume_from_checkpoint", None)
    _claim_output_dir(out, args.overwrite_output_dir, resume, main)
    torch.manual_seed(args.seed)
    device = _device(args)
    cfg = _config(cmd, args, main, out)
    resume_step = None
    if resume is not None:
        from rlsurvey.checkpoint import read_trainer_state, resolve_checkpoint

        found = resolve_checkpoint(resume, out)
        resume_step = int(read_trainer_state(found)["step"])
        if hasattr(cfg, "resume_from_checkpoint"):
            cfg.resume_from_checkpoint = str(found)
    log = MetricsFile(out / "metrics.jsonl", resume_step, enabled=main, report_to=args.report_to, run_dir=out)
    record = {"command": f"train {args.algo}", "model": _model_name(args), "dataset": args.dataset,
              "world": args.world, "seed": args.seed, "num_examples": args.num_examples,
              "processes": int(os.environ.get("WORLD_SIZE", "1")), "resumed_from_step": resume_step,
              "report_to": args.report_to}  # fmt: skip
    try:
        history = _train(args, cfg, out, main, device, log, record)
    finally:
        log.close()
    record["config"] = dataclasses.asdict(cfg)
    record["steps"] = log.count
    results = None
    if main:
        (out / "train_config.json").write_text(json.dumps(json_safe(record), indent=2))
        results = train_report(args, out, device, getattr(cfg, "max_new_tokens", None))
        if results is not None:
            (out / "results.json").write_text(json.dumps(json_safe(results), indent=2))
    return {"output_dir": str(out), "steps": log.count, "last": history[-1] if history else {},
            "results": results}  # fmt: skip


RUN_OUTPUTS = ("metrics.jsonl", "train_config.json", "config.json", "model.safetensors")


def _claim_output_dir(out: Path, overwrite: bool, resume, main: bool) -> None:
    """Refuse to write over another run's outputs unless asked to; with --overwrite-output-dir, remove that
    run's checkpoints so that `--resume-from-checkpoint latest` can never pick one of them up. Only the main
    process looks (the others would see the files it has just begun to write); when it refuses, the launcher
    stops the rest."""
    if not main or not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"rlsurvey: --output-dir {out}: expected a directory, found a file")
    from rlsurvey.checkpoint import CHECKPOINT_PREFIX

    held = sorted(
        p.name for p in out.iterdir() if p.name in RUN_OUTPUTS or p.name.startswith(CHECKPOINT_PREFIX)
    )
    if not held or resume is not None:
        return
    if not overwrite:
        raise SystemExit(
            f"rlsurvey: --output-dir {out}: holds another run's outputs ({', '.join(held[:4])}"
            f"{', ...' if len(held) > 4 else ''}); pass --overwrite-output-dir to replace them, "
            "--resume-from-checkpoint latest to continue that run, or choose another directory"
        )
    for name in held:
        if name.startswith(CHECKPOINT_PREFIX):
            shutil.rmtree(out / name)


def _train(args, cfg, out: Path, main: bool, device, log, record) -> list[dict]:
    """Build the trainer of `args.algo`, train with each logged row appended to metrics.jsonl at once, and
    save the final model into `out`."""
    from rlsurvey.lm.models import load_model

    if args.algo == "reward":
        from rlsurvey.assets import SHIPPED_MODELS, model_path
        from rlsurvey.rewards.bradley_terry import train_reward_model
        from rlsurvey.rewards.reward_model import RewardModel

        name = _model_name(args)
        where = model_path(name) if name in SHIPPED_MODELS else name
        rm = RewardModel.from_pretrained(where, trust_remote_code=args.trust_remote_code).to(device)
        data = _preferences(args, rm.tokenizer)
        history = train_reward_model(rm, data, cfg, callback=log.write)
        if main:
            rm.save_pretrained(out)
        return history
    model, tok = load_model(_model_name(args), device=device, trust_remote_code=args.trust_remote_code)
    if args.algo == "prm":
        return _train_step_rm(args, cfg, out, model, tok, device, log)
    if args.algo == "sft":
        from rlsurvey.algos.sft import SFTTrainer

        trainer = SFTTrainer(model, tok, _demonstrations(args), cfg)
        history = trainer.train(callback=log.write)
        trainer.save(out)
        return history
    if args.algo == "dpo":
        from rlsurvey.algos.dpo_trainer import DPOTrainer

        trainer = DPOTrainer(model, tok, _preferences(args, tok), cfg)
        history = trainer.train(callback=log.write)
        trainer.save(out)  # on every process: the main one writes, the others wait at its barrier
        return history
    prompts = _prompts(args, tok)
    reward_fn, gold_fn, record["reward"] = _reward(args, device)
    if args.algo == "ppo":
        from rlsurvey.algos.rlhf_ppo import RLHFPPOTrainer

        trainer = RLHFPPOTrainer(model, tok, reward_fn, cfg, gold_fn=gold_fn)
        history = trainer.train(prompts, callback=lambda _t, row: log.write(row))
        if main:
            _save_model(trainer.policy, tok, out)
            trainer.value_model.save_pretrained(out / "value")
        return history
    from rlsurvey.algos.grpo import train_grpo

    rollout_fn = None
    if getattr(args, "tool", None):
        from rlsurvey.algos.multiturn import collect_episodes
        from rlsurvey.tasks.tools import CalculatorEnv

        rollout_fn = functools.partial(collect_episodes, env=CalculatorEnv(max_turns=args.max_turns))
        record.update(tool=args.tool, max_turns=args.max_turns)
    history = train_grpo(model, tok, prompts, reward_fn, cfg, callback=log.write, rollout_fn=rollout_fn)
    if main and not (out / "config.json").is_file():  # train_grpo saves to output_dir
        _save_model(model, tok, out)
    return history


# the step-labelled data of `rlsurvey train prm`: chains of 3 to 6 operands with the reasoning opened, one
# operand more than reason-base was pretrained on, so that it makes step errors (chapter 15)
PRM_OPERANDS = (3, 6)


def _train_step_rm(args, cfg, out: Path, policy, tok, device, log) -> list[dict]:
    """`rlsurvey train prm`: sample one response per generated prompt from the policy, label its steps
    exactly (`rlsurvey.tasks.reasoning.step_labels`) and train a StepRewardModel from the same checkpoint."""
    from rlsurvey.assets import SHIPPED_MODELS, model_path
    from rlsurvey.lm.generation import generate
    from rlsurvey.rewards.process import StepRewardModel, StepRewardTrainer, step_examples
    from rlsurvey.tasks import reasoning

    lo, hi = PRM_OPERANDS
    prompts = reasoning.open_reasoning(
        _without_heldout(
            _num(args),
            lambda k: training_prompts(
                reasoning.sample_prompts(k, seed=args.seed, min_operands=lo, max_operands=hi)
            ),
        )
    )
    gen = generate(policy, tok, prompts, cfg.max_new_tokens, cfg.temperature, seed=args.seed)
    name = _model_name(args)
    where = model_path(name) if name in SHIPPED_MODELS else name
    rm = StepRewardModel.from_pretrained(where, trust_remote_code=args.trust_remote_code).to(device)
    trainer = StepRewardTrainer(rm, step_examples(prompts, gen.texts, cfg.kind), cfg)
    history = trainer.train(callback=log.write)
    trainer.save(out)
    return history


def export_data(args) -> Path:
    """`rlsurvey data`: a world's data in a TRL format, written to `args.path`."""
    from rlsurvey.interop import save_dataset, world_dataset

    try:
        ds = world_dataset(args.world, args.data_type, args.num_examples, args.seed, args.conversational)
    except ValueError as exc:
        raise SystemExit(f"rlsurvey data: {exc}") from exc
    return save_dataset(ds, args.path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rlsurvey` command (and `python -m rlsurvey`).

    An error ends the command with one line on stderr, `rlsurvey: <option, file or row>: <what was
    expected>`, and exit status 1; `--debug` (or RLSURVEY_DEBUG=1) shows the traceback instead. SIGINT or
    SIGTERM during training saves a checkpoint and exits with status 130."""
    args = build_parser().parse_args(argv)
    # the options typed (a default that depends on another option, such as --tool's episode budget, must
    # not override an explicit value that happens to equal the plain default)
    args.given_options = {
        a.split("=", 1)[0] for a in (sys.argv[1:] if argv is None else argv) if a[:2] == "--"
    }
    from rlsurvey.distributed import shutdown

    try:
        status = _main(args)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown(wait=status == 0)
    return status


def _quiet_loading() -> None:
    """transformers' weight-loading bars only on a terminal (written to a file, they are noise)."""
    from rlsurvey.progress import display_kind

    if display_kind() != "terminal":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _main(args) -> int:
    try:
        if args.command == "eval":
            _quiet_loading()
            run_eval(args)
            return 0
        if args.command == "data":
            check_data_args(args)
            path = export_data(args)
            print(f"wrote {args.num_examples} {args.data_type} rows of the {args.world} world to {path}")
            return 0
        _quiet_loading()
        summary = train(args)
    except TrainingInterrupted as exc:  # SIGINT or SIGTERM: a checkpoint was saved, no traceback
        print(f"rlsurvey: stopped by {exc}", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug_requested(args):
            raise
        raise SystemExit(error_line(exc)) from None
    if is_main_process():
        last = {k: v for k, v in summary["last"].items() if isinstance(v, (int, float))}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(last.items())[:6])
        print(f"{args.algo}: {summary['steps']} steps, model in {summary['output_dir']}; last: {shown}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
