"""Measured quality of a pretrained world model, and the model card that states it.

Survey section 2.2 of arXiv 2412.10400. A base policy for RL must be (a) a good model of its world, measured
by held-out perplexity; (b) able to write well-formed episodes, measured by how many samples parse under the
grammar; and (c) imperfect, so that RL has room: the gold rewards of its reviews are spread, and its
arithmetic is right only part of the time. Model cards follow Mitchell et al., arXiv 1810.03993.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["N_SAMPLES", "EVAL_SEED", "heldout_nll", "measure_quality", "model_card"]

N_SAMPLES = 500  # sampled prompts per quality measurement
EVAL_SEED = 1234  # seed of the evaluation prompts and of the sampling


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    return [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def padded_batch(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, mask and labels (-100 on padding, so the loss ignores it)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask, ids.masked_fill(mask == 0, -100)


@torch.no_grad()
def heldout_nll(model, tokenizer, texts: list[str], batch_size: int = 256) -> float:
    """Mean next-token negative log-likelihood (nats per token, EOS included) over `texts`."""
    model.eval()
    rows = encode_texts(tokenizer, texts)
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        ids, mask, labels = padded_batch(rows[i : i + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tgt = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), tgt, ignore_index=-100, reduction="sum"
        )
        total += nll.item()
        count += int((tgt != -100).sum())
    return total / count


def measure_quality(path: str | Path, config, val_texts: list[str], progress: bool = False) -> dict:
    """Held-out perplexity plus the world's sample quality for the model saved at `path`."""
    from rlsurvey.lm.generation import generate
    from rlsurvey.lm.models import load_model

    model, tok = load_model(path, device="cpu")
    nll = heldout_nll(model, tok, val_texts)
    out = {
        "heldout_nll": nll,
        "heldout_perplexity": math.exp(nll),
        "n_samples": N_SAMPLES,
        "eval_seed": EVAL_SEED,
    }
    if config.world == "reviews":
        from rlsurvey.tasks import reviews

        prompts = reviews.sample_prompts(N_SAMPLES, EVAL_SEED)
        g = generate(model, tok, prompts, max_new_tokens=64, temperature=1.0, seed=EVAL_SEED)
        full = [p + t for p, t in zip(prompts, g.texts)]
        attrs = [reviews.parse_review(t) for t in full]
        gold = reviews.gold_reward(full)
        out.update(
            parse_rate=float(np.mean([a.grammatical for a in attrs])),
            eos_rate=float(g.finished.float().mean()),
            gold_mean=float(gold.mean()),
            gold_std=float(gold.std()),
            gold_quantiles={str(q): float(np.quantile(gold, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
            frac_gold_positive=float((gold > 0).mean()),
            frac_gold_negative=float((gold < 0).mean()),
            frac_with_insult=float(np.mean([a.n_insults > 0 for a in attrs])),
            frac_with_repetition=float(np.mean([a.repetition > 0 for a in attrs])),
            examples=full[:5],
        )
    elif config.world == "reasoning":
        from rlsurvey.rewards.verifiable import evaluate_reasoning
        from rlsurvey.tasks import reasoning

        prompts = reasoning.sample_prompts(N_SAMPLES, EVAL_SEED)
        q = evaluate_reasoning(model, tok, prompts, max_new_tokens=48, seed=EVAL_SEED)
        g = generate(model, tok, prompts[:5], max_new_tokens=48, temperature=1.0, seed=EVAL_SEED)
        out.update(
            accuracy_sampled=q["accuracy"],
            **{k: q[k] for k in ("reasoning_share", "accuracy_when_reasoning", "accuracy_when_direct")},
            format_rate=q["format_rate"],
            mean_length=q["mean_length"],
            eos_rate=q["eos_rate"],
            examples=[p + t for p, t in zip(prompts[:5], g.texts)],
        )
    elif config.world == "tools":
        from rlsurvey.algos.multiturn import evaluate_episodes
        from rlsurvey.tasks import tools

        prompts = tools.sample_prompts(N_SAMPLES, EVAL_SEED)
        env = tools.CalculatorEnv()
        q = evaluate_episodes(
            model,
            tok,
            prompts,
            env,
            tools.accuracy_reward,
            TOOL_EPISODE_TOKENS,
            temperature=1.0,
            seed=EVAL_SEED,
        )
        out.update(
            accuracy_sampled=q["reward"],
            call_rate=q["call_rate"],
            accuracy_when_calling=q["reward_calling"],
            accuracy_when_direct=q["reward_direct"],
            error_rate=q["error_rate"],
            turns=q["turns"],
            mean_length=q["length"],
            examples=_tool_examples(model, tok, prompts[:5], env),
        )
    else:
        from rlsurvey.tasks import arithmetic

        prompts = arithmetic.sample_prompts(N_SAMPLES, EVAL_SEED, digits=config.digits)
        n_new = config.digits + 3
        greedy = generate(model, tok, prompts, max_new_tokens=n_new, temperature=0.0)
        sampled = generate(model, tok, prompts, max_new_tokens=n_new, temperature=1.0, seed=EVAL_SEED)
        out.update(
            accuracy_sampled=float(arithmetic.verify(prompts, sampled.texts).mean()),
            accuracy_greedy=float(arithmetic.verify(prompts, greedy.texts).mean()),
            corpus_accuracy=1.0 - config.wrong_fraction,
            eos_rate=float(sampled.finished.float().mean()),
            examples=[p + t for p, t in zip(prompts[:5], sampled.texts[:5])],
        )
    return out


TOOL_EPISODE_TOKENS = 48  # the token budget of a tool-world episode (policy and observations together)


def _tool_examples(model, tok, prompts: list[str], env) -> list[str]:
    """Episodes sampled at T=1 on `prompts`, as text with their observations."""
    from rlsurvey.algos.multiturn import lm_policy_turn, run_episodes
    from rlsurvey.lm.generation import stop_token_ids

    turn = lm_policy_turn(model, tok, env.call_close, 1.0, seed=EVAL_SEED)
    batch = run_episodes(turn, tok, prompts, env, TOOL_EPISODE_TOKENS, stop_token_ids(model, tok))
    return [p + t for p, t in zip(prompts, batch.gen.texts)]


def _size_line(config) -> str:
    m = config.model
    return (
        f"LlamaForCausalLM, {m.num_hidden_layers} layers, hidden {m.hidden_size}, "
        f"{m.num_attention_heads} heads, SwiGLU {m.intermediate_size}, "
        f"context {m.max_position_embeddings}, tied embeddings"
    )


def model_card(name: str, config, hist: dict, q: dict) -> str:
    """The README.md of a shipped model: recipe, data, seed and measured quality."""
    flag = config.world
    lines = [
        "---",
        "library_name: transformers",
        "license: mit",
        "pipeline_tag: text-generation",
        "tags: [rlsurvey, tiny, synthetic]",
        "---",
        f"# {name}",
        "",
        f"A tiny causal LM pretrained on the {flag} world of rlsurvey, the base policy that the course's RL",
        'chapters improve. Load it with `rlsurvey.lm.load_model("' + name + '")` or',
        '`AutoModelForCausalLM.from_pretrained(rlsurvey.assets.model_path("' + name + '"))`.',
        "",
        "## Recipe",
        f"- Command: `python -m rlsurvey.lm.pretrain --world {flag}` (1 CPU thread; seed {config.seed}).",
        f"- Architecture: {_size_line(config)}.",
        f"- Optimizer: AdamW, peak lr {config.learning_rate}, {config.warmup_steps} warm-up steps, "
        f"cosine decay to 10%, weight decay {config.weight_decay}, grad clip {config.max_grad_norm}; "
        f"{config.steps} steps of {config.batch_size} examples.",
        f"- Wall time: {hist['wall_s']:.0f} s (corpus, tokenizer and training) on one thread of a shared "
        "2-core CPU.",
        "",
        "## Data",
    ]
    if config.world == "reviews":
        lines += [
            f"- {config.n_train} reviews from "
            f"`rlsurvey.tasks.reviews.sample_reviews(n, seed={config.seed})`,",
            f"  each followed by `<eos>`; held out: {config.n_val} reviews with seed {config.seed + 1000}.",
            f"- Tokenizer: byte-level BPE trained on the training reviews (at most {config.vocab_size}",
            "  entries), special tokens `<pad>` and `<eos>`.",
        ]
    elif config.world == "reasoning":
        lines += [
            f"- {config.n_train} lines from `rlsurvey.tasks.reasoning.make_corpus(n, seed={config.seed}, "
            f"worked_fraction={config.worked_fraction}, wrong_fraction={config.wrong_fraction})`:",
            "  chains of 3 to 5 one-digit additions and subtractions; about "
            f"{config.worked_fraction:.0%} are worked solutions",
            "  `[3+8=11;11-5=6;6+9=15]15` (always right), the rest direct answers of which about "
            f"{config.wrong_fraction:.0%} are wrong;",
            f"  held out: {config.n_val} lines, seed {config.seed + 1000}.",
            "- Tokenizer: one token per character (digits, `+`, `-`, `=`, `[`, `]`, `;`), special tokens",
            "  `<pad>`, `<eos>`, `<unk>`.",
        ]
    elif config.world == "tools":
        lines += [
            f"- {config.n_train} lines from `rlsurvey.tasks.tools.make_corpus(n, seed={config.seed}, "
            f"tool_fraction={config.tool_fraction}, wrong_fraction={config.wrong_fraction})`:",
            "  products of two two-digit numbers and sums of four or five; about "
            f"{config.tool_fraction:.0%} call the calculator",
            "  and let its result stand, `37*58=<37*58>{2146}` (always right); the rest answer directly,",
            f"  about {config.wrong_fraction:.0%} of them wrong;",
            f"  held out: {config.n_val} lines, seed {config.seed + 1000}.",
            "- Tokenizer: one token per character (digits, `+`, `*`, `=`, `<`, `>`, `{`, `}` and the letters",
            "  of the calculator's error messages), special tokens `<pad>`, `<eos>`, `<unk>`.",
        ]
    else:
        lines += [
            f"- {config.n_train} lines `a+b=c` / `a-b=c` from `rlsurvey.tasks.arithmetic.make_corpus(n, "
            f"seed={config.seed}, wrong_fraction={config.wrong_fraction}, digits={config.digits})`: about "
            f"{config.wrong_fraction:.0%} of the answers are deliberately wrong; held out: "
            f"{config.n_val} lines, seed {config.seed + 1000}.",
            "- Tokenizer: one token per character (digits, `+`, `-`, `=`), special tokens `<pad>`, `<eos>`,",
            "  `<unk>`.",
        ]
    lines += [
        "",
        "## Measured quality",
        f"Measured by `rlsurvey.lm.quality.measure_quality` on {q['n_samples']} prompts "
        f"(seed {q['eval_seed']}).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| held-out loss (nats/token) | {q['heldout_nll']:.4f} |",
        f"| held-out perplexity | {q['heldout_perplexity']:.3f} |",
    ]
    if config.world == "reviews":
        qs = q["gold_quantiles"]
        lines += [
            f"| samples that parse under the grammar (T=1) | {q['parse_rate']:.1%} |",
            f"| samples that end with EOS | {q['eos_rate']:.1%} |",
            f"| gold reward mean (std) | {q['gold_mean']:.3f} ({q['gold_std']:.3f}) |",
            f"| gold reward 5/25/50/75/95% | {qs['0.05']:.2f} / {qs['0.25']:.2f} / {qs['0.5']:.2f} / "
            f"{qs['0.75']:.2f} / {qs['0.95']:.2f} |",
            f"| gold > 0 / gold < 0 | {q['frac_gold_positive']:.1%} / {q['frac_gold_negative']:.1%} |",
            f"| samples with an insult / with repetition | {q['frac_with_insult']:.1%} / "
            f"{q['frac_with_repetition']:.1%} |",
        ]
    elif config.world == "reasoning":
        lines += [
            f"| accuracy (strict verifier), sampled at T=1 | {q['accuracy_sampled']:.1%} |",
            f"| responses that reason (open with `[`) | {q['reasoning_share']:.1%} |",
            f"| accuracy when it reasons / when it answers directly | {q['accuracy_when_reasoning']:.1%} / "
            f"{q['accuracy_when_direct']:.1%} |",
            f"| responses in the reasoning format | {q['format_rate']:.1%} |",
            f"| mean response length (tokens, EOS included) | {q['mean_length']:.1f} |",
            f"| samples that end with EOS | {q['eos_rate']:.1%} |",
        ]
    elif config.world == "tools":
        lines += [
            f"| accuracy (strict verifier), episodes sampled at T=1 | {q['accuracy_sampled']:.1%} |",
            f"| episodes that call the calculator | {q['call_rate']:.1%} |",
            f"| accuracy when it calls / when it answers directly | {q['accuracy_when_calling']:.1%} / "
            f"{q['accuracy_when_direct']:.1%} |",
            f"| observations that are errors | {q['error_rate']:.1%} |",
            f"| policy turns per episode | {q['turns']:.2f} |",
            f"| mean episode length (tokens, observations included) | {q['mean_length']:.1f} |",
        ]
    else:
        lines += [
            f"| exact-match accuracy, sampled at T=1 | {q['accuracy_sampled']:.1%} |",
            f"| exact-match accuracy, greedy | {q['accuracy_greedy']:.1%} |",
            f"| accuracy of the training corpus itself | {q['corpus_accuracy']:.1%} |",
            f"| samples that end with EOS | {q['eos_rate']:.1%} |",
        ]
    lines += ["", "Samples (T=1):", ""] + [f"    {e!r}" for e in q["examples"]]
    lines += [
        "",
        "## Intended use and limits",
        "Teaching only: a model of a toy world, not of English or arithmetic. It knows nothing outside its",
        "grammar, and its mistakes are by design (they are what RL is meant to fix).",
        "",
    ]
    return "\n".join(lines)
