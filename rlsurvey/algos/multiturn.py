"""Multi-turn rollouts: the policy writes, a tool answers, the policy goes on; one reward for the episode.

Beyond the survey (arXiv 2412.10400): the episode of an agent is an MDP over turns. Its state is the prompt
and everything written so far; the policy's actions are the tokens it samples, and the environment's
observations (a tool's output, `rlsurvey.tasks.tools`) are transitions, not actions: the policy did not
choose them, so their tokens carry no log π term in the policy gradient.
An episode is laid out as one response,

    prompt | policy turn | observation | policy turn | ... | policy turn EOS

with two masks over the response tokens: `response_mask` (1 on every real token, the attention mask) and
`action_mask` (1 on the policy's tokens only). The log-probs, the policy loss, the KL and the entropy are all
taken over the action mask; the group advantage (GRPO, arXiv 2402.03300) is one per episode, from its final
reward, and is broadcast to the episode's action tokens.

Tokens in, tokens out: the policy's turns are kept as the sampled ids and each observation is tokenized alone
and appended, so the episode is never re-tokenized from text (which can split a turn differently from the way
it was sampled, and then score tokens that were never sampled).

`run_episodes` drives any `policy_turn` (a scripted one in the tests); `collect_episodes` runs a language
model through it and returns a `rlsurvey.algos.rollout.Rollout` that `rlsurvey.algos.grpo.train_grpo`
trains on as it is (`rollout_fn=functools.partial(collect_episodes, env=env)`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from rlsurvey.algos.rollout import Rollout, _check_context
from rlsurvey.lm.generation import (
    GenerationOutput,
    _check_tokenizer,
    _generate_batch,
    stop_token_ids,
    tokenize_prompts,
)
from rlsurvey.lm.logprobs import ResponseLogprobs, response_logprobs, sequence_logprobs
from rlsurvey.rewards.base import RewardFn, compute_rewards
from rlsurvey.tasks.tools import ToolEnv

__all__ = [
    "Episode",
    "EpisodeBatch",
    "collect_episodes",
    "episode_logprobs",
    "episode_metrics",
    "evaluate_episodes",
    "lm_policy_turn",
    "run_episodes",
]

# policy_turn(prefixes, budgets) -> one list of new token ids per prefix, at most its budget long
PolicyTurn = Callable[[list[list[int]], list[int]], list[list[int]]]


@dataclass
class Episode:
    prompt: str
    segments: list[tuple[bool, list[int]]] = field(default_factory=list)  # (is the policy's, token ids)
    finished: bool = False  # the last policy turn ended with EOS
    calls: int = 0  # tool calls the policy made: turns that ended at the call marker and went to the env

    @property
    def ids(self) -> list[int]:
        return [t for _, seg in self.segments for t in seg]

    @property
    def action_mask(self) -> list[int]:
        return [int(own) for own, seg in self.segments for _ in seg]

    @property
    def turns(self) -> int:
        return sum(own for own, _ in self.segments)

    @property
    def answered(self) -> int:
        """The calls whose observation was appended (it fit in the budget): one per observation segment."""
        return sum(not own for own, _ in self.segments)


@dataclass
class EpisodeBatch:
    episodes: list[Episode]
    gen: GenerationOutput  # the episodes as one response each: response_mask is 1 on every real token
    action_mask: torch.Tensor  # [B, R] 1 on the policy's tokens (EOS included), 0 on observations and padding


def _stop_ids(tokenizer, marker: str) -> list[int]:
    """Ids of the tokens whose text contains `marker` (one for a character-level tokenizer); the vocabulary
    is decoded once per tokenizer and marker."""
    known = _STOP_CACHE.setdefault(tokenizer, {})
    if marker not in known:
        known[marker] = [i for i in range(len(tokenizer)) if marker in tokenizer.decode([i])]
    return known[marker]


_STOP_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def run_episodes(
    policy_turn: PolicyTurn,
    tokenizer,
    prompts: Sequence[str],
    env: ToolEnv,
    max_new_tokens: int,
    eos_ids: Sequence[int] | None = None,
) -> EpisodeBatch:
    """Play one episode per prompt: at each turn `policy_turn` extends every live episode; a turn that ends
    at the env's `call_close` gets the env's observation appended and the episode goes on; a turn that ends
    otherwise (EOS, or the budget) ends it. At most `env.max_turns` policy turns, and at most
    `max_new_tokens` response tokens (policy and observation together): an observation that does not fit
    ends the episode unanswered. eos_ids: the tokens that end an episode (default: the tokenizer's EOS).

    Each `Episode` counts the tool calls twice: `calls`, the calls the policy made (turns that ended at
    `call_close` and were sent to the env; a call in the last allowed turn is not sent, so not counted), and
    `answered`, those whose observation was appended. They differ when an observation does not fit in the
    budget: the policy called, the env was asked, and the episode ended without the answer.

    | output | shape | meaning |
    |---|---|---|
    | gen.prompt_ids, gen.prompt_mask | [B, P] | left-padded prompt tokens, as `generate` lays them |
    | gen.response_ids | [B, R] | the episode's tokens after the prompt, right-padded |
    | gen.response_mask | [B, R] | 1 on every real episode token |
    | action_mask | [B, R] | 1 on the policy's tokens |
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    if not isinstance(env, ToolEnv):
        raise TypeError(f"env must be a rlsurvey.tasks.tools.ToolEnv, got {type(env).__name__}")
    p_ids, p_mask = tokenize_prompts(tokenizer, prompts)
    prompt_rows = [row[m.bool()].tolist() for row, m in zip(p_ids, p_mask)]
    episodes = [Episode(p) for p in prompts]
    envs = [env.reset(p) for p in prompts]
    eos = set(stop_token_ids(None, tokenizer) if eos_ids is None else eos_ids)
    closers = set(_stop_ids(tokenizer, env.call_close))
    live = list(range(len(prompts)))
    for turn in range(env.max_turns):
        if not live:
            break
        budgets = [max_new_tokens - len(episodes[i].ids) for i in live]
        new = policy_turn([prompt_rows[i] + episodes[i].ids for i in live], budgets)
        still = []
        for i, toks, budget in zip(live, new, budgets):
            toks = list(toks)[:budget]
            ep = episodes[i]
            ep.segments.append((True, toks))
            if toks and toks[-1] in eos:
                ep.finished = True
                continue
            if not toks or toks[-1] not in closers or turn == env.max_turns - 1:
                continue  # the budget ran out, or the turn limit: the episode ends here
            text = tokenizer.decode(toks, skip_special_tokens=True)
            obs = envs[i].observe(text)
            ep.calls += int(obs is not None)  # the policy made a call, and the env was asked
            obs_ids = tokenizer(obs, add_special_tokens=False)["input_ids"] if obs else []
            if not obs_ids or len(ep.ids) + len(obs_ids) >= max_new_tokens:
                continue  # no room for the observation and a token after it
            ep.segments.append((False, obs_ids))
            still.append(i)
        live = still
    return _batch(tokenizer, episodes, p_ids, p_mask)


def _batch(tokenizer, episodes: list[Episode], p_ids, p_mask) -> EpisodeBatch:
    pad = tokenizer.pad_token_id
    width = max(1, max(len(ep.ids) for ep in episodes))
    ids = torch.full((len(episodes), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    action = torch.zeros_like(ids)
    for b, ep in enumerate(episodes):
        n = len(ep.ids)
        if n:
            ids[b, :n] = torch.tensor(ep.ids)
            mask[b, :n] = 1
            action[b, :n] = torch.tensor(ep.action_mask)
    texts = tokenizer.batch_decode([ep.ids for ep in episodes], skip_special_tokens=True)
    finished = torch.tensor([ep.finished for ep in episodes])
    gen = GenerationOutput([ep.prompt for ep in episodes], texts, p_ids, p_mask, ids, mask, finished)
    return EpisodeBatch(episodes, gen, action)


def lm_policy_turn(
    model, tokenizer, stop_marker: str, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    seed: int | None = None,
) -> PolicyTurn:  # fmt: skip
    """A `policy_turn` that samples from a causal LM (the package's sampler, `rlsurvey.lm.generation`) until
    EOS, a token holding `stop_marker`, or the row's budget. One private generator seeded by `seed` serves
    every turn, so a seed gives the same episodes."""
    _check_tokenizer(tokenizer)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(int(torch.randint(2**62, ()).item()) if seed is None else seed)
    stops = sorted(set(stop_token_ids(model, tokenizer)) | set(_stop_ids(tokenizer, stop_marker)))
    stop_t = torch.tensor(stops, dtype=torch.long, device=device)
    pad = tokenizer.pad_token_id

    def turn(prefixes: list[list[int]], budgets: list[int]) -> list[list[int]]:
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(prefixes):  # left-padded, as the sampler expects
            ids[b, width - len(p) :] = torch.tensor(p)
            mask[b, width - len(p) :] = 1
        was_training = model.training
        model.eval()
        try:
            *_, resp, resp_mask, _ = _generate_batch(
                model, ids.to(device), mask.to(device), stop_t, pad, max(budgets), temperature, top_k,
                top_p, gen, False,
            )  # fmt: skip
        finally:
            model.train(was_training)
        lengths = resp_mask.sum(1).tolist()
        return [row[: min(n, b)] for row, n, b in zip(resp.tolist(), lengths, budgets)]

    return turn


def episode_logprobs(
    model, gen: GenerationOutput, action_mask: torch.Tensor, temperature: float = 1.0, with_entropy=False
) -> ResponseLogprobs:
    """log π(a_t | s_t) of the policy's tokens of each episode, 0 on observations and padding.

    One forward pass over prompt and episode, attending to every real token (observations included: they
    are the state), with `response_logprobs`; then the action mask keeps the policy's terms:

        log π(episode's actions | prompt, observations) = Σ_t a_t log π(y_t | x, y_<t)

    with a_t the action mask. Returned `mask` is the action mask; `seq_logps` [B] sums over it.
    """
    out = response_logprobs(
        model, gen.prompt_ids, gen.prompt_mask, gen.response_ids, gen.response_mask, temperature=temperature,
        with_entropy=with_entropy, share_prompts=True,
    )  # fmt: skip
    a = action_mask.to(out.token_logps.device, out.token_logps.dtype)
    entropy = None if out.entropy is None else out.entropy * a
    return ResponseLogprobs(out.token_logps * a, sequence_logprobs(out.token_logps, a), a, entropy)


@torch.no_grad()
def collect_episodes(
    policy,
    tokenizer,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    reference=None,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    *,
    env: ToolEnv,
    missing_eos_penalty: float | None = None,
    score_policy: bool = True,
    mask_observations: bool = True,
) -> Rollout:
    """`rlsurvey.algos.rollout.collect_rollout` for multi-turn episodes: play one episode per prompt with the
    tool environment `env`, score the whole episode text (observations included) with `reward_fn`, and
    record old and reference log-probs of the policy's tokens. The Rollout's `mask` is the action mask, so
    every loss, KL and entropy that multiplies by it leaves the observations out.

    mask_observations: False trains on the observation tokens as if the policy had written them (the
    mistake the mask prevents; kept to measure what it costs). max_new_tokens bounds the whole episode.
    """
    _check_context(policy, tokenizer, prompts, max_new_tokens)
    temp = temperature if temperature > 0 else 1.0
    turn = lm_policy_turn(policy, tokenizer, env.call_close, temperature, top_k, top_p, seed)
    batch = run_episodes(turn, tokenizer, prompts, env, max_new_tokens, stop_token_ids(policy, tokenizer))
    device = next(policy.parameters()).device
    g = batch.gen
    gen = GenerationOutput(
        g.prompts, g.texts, g.prompt_ids.to(device), g.prompt_mask.to(device), g.response_ids.to(device),
        g.response_mask.to(device), g.finished.to(device),
    )  # fmt: skip
    action = (batch.action_mask if mask_observations else g.response_mask).to(device)
    scores = compute_rewards(reward_fn, gen.prompts, gen.texts)
    if missing_eos_penalty is not None:
        if not math.isfinite(missing_eos_penalty):
            raise ValueError(f"missing_eos_penalty must be finite, got {missing_eos_penalty}")
        scores = scores - missing_eos_penalty * (~gen.finished.cpu()).float()
    logps = entropy = ref = None
    if score_policy:
        was_training = policy.training
        policy.eval()
        try:
            pol = episode_logprobs(policy, gen, action, temp, with_entropy=True)
        finally:
            policy.train(was_training)
        logps, entropy = pol.token_logps, pol.entropy
    if reference is not None:
        reference.eval()
        ref = episode_logprobs(reference, gen, action, temp).token_logps
    return Rollout(gen, logps, ref, scores.to(device), entropy, action_mask=action)


@torch.no_grad()
def evaluate_episodes(
    policy,
    tokenizer,
    prompts: Sequence[str],
    env: ToolEnv,
    reward_fn: RewardFn,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
) -> dict[str, float]:
    """What an agent does on `prompts` (greedy at temperature 0), as an `eval_fn` of `train_grpo` logs it:
    "reward" (the mean of `reward_fn`, an accuracy for a verifier), "call_rate" (the share of episodes in
    which the policy made at least one call, answered or not), "calls" (calls made per episode), "answered"
    (calls answered with an observation per episode), "turns" per episode, "error_rate" (the share of the
    appended observations that are errors), "length" (episode tokens) and "policy_tokens" (the policy's
    own), and "reward_calling" / "reward_direct": the mean reward of the episodes in which the policy made
    at least one call / made none (NaN for an empty group). See `run_episodes` for calls made and answered."""
    turn = lm_policy_turn(policy, tokenizer, env.call_close, temperature, seed=seed)
    batch = run_episodes(turn, tokenizer, prompts, env, max_new_tokens, stop_token_ids(policy, tokenizer))
    scores = compute_rewards(reward_fn, batch.gen.prompts, batch.gen.texts).float()
    called = torch.tensor([ep.calls > 0 for ep in batch.episodes])
    split = {
        f"reward_{name}": scores[rows].mean().item() if rows.any() else math.nan
        for name, rows in (("calling", called), ("direct", ~called))
    }
    return {"reward": scores.mean().item(), **episode_metrics(batch, tokenizer, env), **split}


def episode_metrics(batch: EpisodeBatch, tokenizer, env: ToolEnv) -> dict[str, float]:
    """The tool-use statistics of a batch of episodes (the keys of `evaluate_episodes` but "reward")."""
    eps = batch.episodes
    obs = [tokenizer.decode(seg) for ep in eps for own, seg in ep.segments if not own]
    n = len(eps)
    return {
        "call_rate": sum(ep.calls > 0 for ep in eps) / n,
        "calls": sum(ep.calls for ep in eps) / n,
        "answered": sum(ep.answered for ep in eps) / n,
        "turns": sum(ep.turns for ep in eps) / n,
        "error_rate": sum(o.startswith(f"{env.obs_open}error") for o in obs) / max(1, len(obs)),
        "length": batch.gen.response_mask.sum().item() / n,
        "policy_tokens": batch.action_mask.sum().item() / n,
    }
