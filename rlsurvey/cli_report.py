"""The held-out report of the command line: `rlsurvey train` ends with one, and `rlsurvey eval` prints one.

On a synthetic world the truth is known, so a run can say what it learned in the world's own measure, on
prompts it never trained on (`rlsurvey.evaluation`): the gold reward of the reviews world or the verifier
accuracy of the arithmetic and reasoning worlds, with its standard error, the mean response length and the KL
to the starting model, for the starting model and the trained one, and their difference paired by prompt. A
reward model is scored by its accuracy against the gold order on held-out pairs, against the coin flip of
an untrained one.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rlsurvey.assets import WORLD_MODEL
from rlsurvey.evaluation import compare_reports

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "add_eval_parser", "checkpoint_kind", "run_eval", "train_report"]

REPORT_PROMPTS = 512  # held-out prompts of the report at the end of `rlsurvey train`
REPORT_PAIRS = 500  # held-out pairs of a reward model's report
REPORT_STEP_PROMPTS = 300  # held-out prompts whose responses' steps score a step reward model
DEFAULT_MAX_NEW_TOKENS = {"reviews": 24, "arithmetic": 5, "reasoning": 48, "tools": 32}


def checkpoint_kind(path: str | Path) -> str:
    """'reward' for a sequence-classification checkpoint (a reward model), 'step-reward' for a
    token-classification one, else 'policy'; shipped names and hub ids are policies."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return "policy"
    archs = json.loads(config.read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "reward"
    if any(a.endswith("ForTokenClassification") for a in archs):
        return "step-reward"
    return "policy"


def _load_policy(name: str, device, trust_remote_code: bool = False):
    from rlsurvey.lm.models import load_model

    model, tok = load_model(str(name), device=device, trust_remote_code=trust_remote_code)
    return model.eval().requires_grad_(False), tok


def _policy_reports(names: dict[str, str], world: str, start: str, device, n: int, max_new_tokens: int,
                    seed: int, trust_remote_code: bool = False, env=None) -> dict[str, dict]:  # fmt: skip
    """One report per named policy on the same held-out prompts and sampling seed, each with its KL to
    `start` (the starting model, loaded once as the reference); `env`: the tools world's environment."""
    from rlsurvey.evaluation import evaluate_policy_on_world, heldout_prompts

    prompts = heldout_prompts(world, n)
    reference, ref_tok = _load_policy(start, device, trust_remote_code)
    reports = {}
    for label, name in names.items():
        model, tok = (reference, ref_tok) if name == start else _load_policy(name, device, trust_remote_code)
        reports[label] = evaluate_policy_on_world(
            model, tok, world, prompts, reference, max_new_tokens, seed=seed, env=env
        )
    return reports


def _reward_reports(names: dict[str, str], device, n: int) -> dict[str, dict]:
    from rlsurvey.evaluation import evaluate_reward_model_on_world, heldout_pairs
    from rlsurvey.rewards.reward_model import RewardModel

    pairs = heldout_pairs(n)
    out = {}
    for label, name in names.items():
        rm = RewardModel.from_pretrained(name).to(device).eval().requires_grad_(False)
        out[label] = evaluate_reward_model_on_world(rm, pairs)
    return out


def _print(reports: dict[str, dict], change: dict | None, file=None) -> None:
    from rlsurvey.evaluation import format_reports

    print(format_reports(reports), file=file)
    if change is not None:
        how = "paired by prompt" if change["paired"] else "independent samples"
        print(
            f"change in {change['metric']}: {change['change']:+.3f} ± {change['se']:.3f} "
            f"({change['standard_errors']:+.1f} standard errors, {how})",
            file=file,
        )


def _strip(reports: dict[str, dict]) -> dict[str, dict]:
    """The reports without their per-prompt values, for JSON files."""
    return {k: {f: v for f, v in r.items() if f != "values"} for k, r in reports.items()}


def train_report(args, out: Path, device, max_new_tokens: int | None = None) -> dict | None:
    """The held-out report that ends `rlsurvey train` on a synthetic world: the starting model against the
    trained one in `out` (a reward model: against an untrained one's coin flip). None where no truth is
    known (a --dataset run, a step reward model)."""
    if args.dataset is not None or getattr(args, "no_report", False):
        return None
    if args.algo == "prm":
        return _step_reward_report(args, out, device, max_new_tokens)
    if args.algo == "reward":
        if args.world != "reviews":
            return None
        reports = _reward_reports({"trained": str(out)}, device, REPORT_PAIRS)
        trained = reports["trained"]
        change = {"metric": trained["metric"], "change": trained["mean"] - 0.5, "se": trained["se"],
                  "paired": False}  # fmt: skip
        change["standard_errors"] = change["change"] / change["se"] if change["se"] > 0 else math.inf
        print(f"held-out report ({REPORT_PAIRS} pairs whose prompts were never trained on):")
        _print(reports, None)
        print(f"above the coin flip of an untrained model: {change['change']:+.3f} ± {change['se']:.3f}")
        return {"reports": _strip(reports), "change": change}
    start = args.model or WORLD_MODEL[args.world]
    tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.world]
    env = None
    if getattr(args, "tool", None):  # the episodes of the run: its turn limit
        from rlsurvey.tasks.tools import CalculatorEnv

        env = CalculatorEnv(max_turns=args.max_turns)
    reports = _policy_reports({"start": start, "trained": str(out)}, args.world, start, device,
                              REPORT_PROMPTS, tokens, args.seed, args.trust_remote_code, env)  # fmt: skip
    change = compare_reports(reports["start"], reports["trained"])
    print(
        f"held-out report ({REPORT_PROMPTS} prompts never trained on, one sample each, {tokens} new tokens):"
    )
    _print(reports, change)
    return {"reports": _strip(reports), "change": change, "max_new_tokens": tokens}


def _step_reward_report(args, out: Path, device, max_new_tokens: int | None) -> dict:
    """`rlsurvey train prm`: the trained step (or outcome) reward model against the exact labels of the
    policy's responses to held-out prompts, as an AUROC with a bootstrap standard error over responses; an
    untrained head scores every step alike, an AUROC of 0.5."""
    from rlsurvey.cli import PRM_OPERANDS
    from rlsurvey.evaluation import heldout_prompts
    from rlsurvey.lm.generation import generate
    from rlsurvey.rewards import process
    from rlsurvey.tasks import reasoning

    lo, hi = PRM_OPERANDS
    prompts = reasoning.open_reasoning(heldout_prompts("reasoning", REPORT_STEP_PROMPTS, min_operands=lo,
                                                       max_operands=hi))  # fmt: skip
    policy, tok = _load_policy(args.model or WORLD_MODEL["reasoning"], device, args.trust_remote_code)
    tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS["reasoning"]
    texts = generate(policy, tok, prompts, tokens, 1.0, seed=args.seed).texts
    labels = [reasoning.step_labels(p, c) for p, c in zip(prompts, texts, strict=True)]
    model = process.StepRewardModel.from_pretrained(out).to(device)
    scores = model.step_scores(prompts, texts)
    if model.kind == "orm":  # what an ORM is trained for: the answer, read at the EOS
        metric = "answer AUROC against exact labels"
        auc, se = process.auroc_by_response(
            [[s[-1]] for s in scores], [[int(x.answer_correct)] for x in labels]
        )
    else:
        metric = "step AUROC against exact labels"
        auc, se = process.auroc_by_response([s[:-1] for s in scores], [list(x.correct) for x in labels])
    n_steps = sum(len(x.correct) for x in labels)
    trained = {"metric": metric, "mean": auc, "se": se, "n": len(prompts), "steps": n_steps}
    change = {"metric": metric, "change": auc - 0.5, "se": se, "paired": False,
              "standard_errors": (auc - 0.5) / se if se > 0 else math.inf}  # fmt: skip
    where = f"{len(prompts)} prompts never trained on, {n_steps} steps of the policy's responses"
    print(f"held-out report ({where}):")
    margin = change["standard_errors"]
    print(f"{metric}: {auc:.3f} ± {se:.3f}; above an untrained model's 0.5 by {margin:.1f} standard errors")
    return {"reports": {"trained": trained}, "change": change, "max_new_tokens": tokens}


def add_eval_parser(sub, debug_help: str) -> argparse.ArgumentParser:
    """`rlsurvey eval`: the held-out report of one or more checkpoints."""
    p = sub.add_parser(
        "eval", help="the held-out report of checkpoints on a synthetic world (gold reward or accuracy)",
        description="Score policies (or reward models) on a synthetic world's held-out prompts (pairs) "
        "against the world's truth, side by side.",
    )  # fmt: skip
    p.add_argument(
        "--model", nargs="+", required=True,
        help="checkpoints: output directories of `rlsurvey train`, shipped names or hub ids",
    )  # fmt: skip
    p.add_argument("--world", choices=sorted(WORLD_MODEL), required=True, help="the world whose truth scores")
    p.add_argument(
        "--reference", default=None,
        help="the model the KL is measured to [default: the world's shipped base model]",
    )  # fmt: skip
    p.add_argument(
        "-n", "--num-examples", type=int, default=REPORT_PROMPTS,
        help=f"held-out prompts (pairs for reward models) [default: {REPORT_PROMPTS}]",
    )  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="response budget [default: reviews 24, arithmetic 5, reasoning 48]")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the sampling seed, the same for every model")
    p.add_argument("--json", default=None, help="also write the reports to this JSON file")
    p.add_argument("--device", default=None, help="cpu, cuda, ... [default: CUDA when present]")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return p


def run_eval(args) -> dict:
    """`rlsurvey eval`: print the table (and the change from the first model to each other one) and return
    the reports."""
    from rlsurvey.runtime import default_device

    if args.num_examples < 2:
        raise SystemExit(f"rlsurvey eval: --num-examples {args.num_examples}: expected at least 2")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise SystemExit(f"rlsurvey eval: --max-new-tokens {args.max_new_tokens}: expected a positive int")
    kinds = {m: checkpoint_kind(m) for m in args.model}
    if "step-reward" in kinds.values():
        bad = [m for m, k in kinds.items() if k == "step-reward"]
        raise SystemExit(f"rlsurvey eval: {bad[0]}: a step reward model; its report is chapter 15's")
    if len(set(kinds.values())) > 1:
        raise SystemExit("rlsurvey eval: --model mixes reward models and policies; evaluate them apart")
    for m in args.model:
        if kinds[m] == "reward" and args.world != "reviews":
            raise SystemExit(f"rlsurvey eval: {m}: reward models are scored on the reviews world's pairs")
    device = default_device(args.device)
    names = {m: m for m in args.model}
    if kinds[args.model[0]] == "reward":
        reports = _reward_reports(names, device, args.num_examples)
    else:
        tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.world]
        reference = args.reference or WORLD_MODEL[args.world]
        reports = _policy_reports(names, args.world, reference, device, args.num_examples, tokens, args.seed,
                                  args.trust_remote_code)  # fmt: skip
    first = args.model[0]
    changes = {m: compare_reports(reports[first], reports[m]) for m in args.model[1:]}
    _print(reports, None)
    for m, change in changes.items():
        print(f"{m} minus {first}: {change['change']:+.3f} ± {change['se']:.3f} "
              f"({change['standard_errors']:+.1f} standard errors)")  # fmt: skip
    result = {"reports": _strip(reports), "changes": changes}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result
