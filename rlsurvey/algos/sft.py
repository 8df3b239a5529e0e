"""Supervised fine-tuning (SFT): the first stage of every RLHF recipe of the survey, and R1's cold start.

InstructGPT (arXiv 2203.02155, section 3.5) fine-tunes the pretrained model on demonstrations written by
labelers; the result is the *reference policy* π_ref that RLHF's KL term and DPO's ratios are measured
against, and the starting point of the reward model. DeepSeek-R1 (arXiv 2501.12948, section 2.3.1) starts its
RL from a "cold start": a few thousand long worked solutions learned by SFT, so that RL begins from a model
that already reasons in a readable format.

The loss is the negative log-likelihood of the completion given the prompt, averaged over completion tokens:

    L(θ) = − Σ_i Σ_t log π_θ(y_{i,t} | x_i, y_{i,<t}) / Σ_i |y_i|

Prompt tokens are context only (`completion_only_loss`, TRL's default for prompt-completion data): the model
learns what to answer, not to predict the questions. The average is over every completion token of an
optimizer step, whatever the micro-batches, so gradient accumulation changes nothing but memory.

Data formats (TRL's):

| format             | columns                                    | prompt / completion                  |
|--------------------|--------------------------------------------|--------------------------------------|
| prompt-completion  | `prompt`, `completion` (strings)           | as given                             |
| conversational p-c | `prompt`, `completion` (lists of messages) | rendered by the chat template        |
| conversational     | `messages` (a list of messages)            | the last assistant turn: completion  |
| language modeling  | `text`                                     | all tokens but the first are trained |

Conversations are rendered with the tokenizer's chat template when it has one (the completion is the part of
the whole conversation that follows the prompt rendered with `add_generation_prompt=True`), otherwise as
"role: content" lines (`rlsurvey.data`). Packing (`SequenceBatch`) lays the examples first-fit into rows with
position ids that restart per example, so no example attends to another; it is checked exact against padding
on the first examples and turned off with a warning otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlsurvey.algos.dpo_trainer import SequenceBatch, packing_is_exact
from rlsurvey.algos.rollout import context_length
from rlsurvey.algos.supervised import SupervisedTrainer

__all__ = ["SFTConfig", "SFTTrainer", "sft_columns", "sft_loss", "tokenize_sft"]


@dataclass
class SFTConfig:
    learning_rate: float = 1e-4  # AdamW peak rate (TRL's 2e-5 suits billions of parameters, not tiny models)
    batch_size: int = 16  # examples per micro-batch, over all processes together
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    max_steps: int | None = None  # optimizer steps; None: num_epochs passes over the data
    num_epochs: float = 1.0  # passes over the data when max_steps is None
    lr_scheduler: str = "linear"  # "linear" (decay to 0 after warm-up) or "constant"
    warmup_steps: int = 0  # linear warm-up from 0 to learning_rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    adam_epsilon: float = 1e-8  # AdamW denominator guard
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (None: no clipping)
    max_length: int | None = None  # longest prompt + completion in tokens (None: the model's context)
    completion_only_loss: bool = True  # False: the prompt's tokens are trained on too
    add_eos: bool = True  # end every completion with EOS, so the model learns to stop
    packing: bool = True  # pack examples into rows instead of padding (checked exact; else padding)
    fused_lm_head: bool = False  # log-probs from hidden states and LM head, never full logits (large vocab)
    shuffle: bool = True  # reshuffle the data every epoch
    seed: int = 0  # seeds the shuffling
    disable_dropout: bool = False  # dropout is part of ordinary fine-tuning; True turns it off
    logging_steps: int = 1  # optimizer steps averaged into one history entry
    save_steps: int | None = None  # save output_dir/checkpoint-<step> every this many steps (None: never)
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    output_dir: str | None = None  # checkpoints: HF directories (model, tokenizer, trainer_state.json)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir
    progress: bool = True  # show a tqdm progress bar
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes

    def __post_init__(self):
        from rlsurvey.checks import check_fields

        if self.lr_scheduler not in ("linear", "constant"):
            raise ValueError(f"lr_scheduler must be 'linear' or 'constant', got {self.lr_scheduler!r}")
        if self.save_steps is not None and self.output_dir is None:
            raise ValueError("save_steps needs an output_dir, got output_dir=None")
        check_fields(self, {
            "learning_rate": ">0", "batch_size": "int>=1", "gradient_accumulation_steps": "int>=1",
            "max_steps": "int>=1", "num_epochs": ">0", "warmup_steps": "int>=0", "weight_decay": ">=0",
            "adam_betas": "[0,1)", "adam_epsilon": ">0", "max_grad_norm": ">0", "max_length": "int>=2",
            "logging_steps": "int>=1", "save_steps": "int>=1", "save_total_limit": "int>=1",
        })  # fmt: skip


def sft_loss(token_logps: torch.Tensor, owner: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The mean negative log-likelihood of completion tokens, and metrics.

    token_logps: [T] log π(y_t | x, y_<t) of every completion token of a batch; owner: [T] the example of
    each token (for the per-example metric). Returns (loss, {"mean_token_logp", "num_tokens"})."""
    if token_logps.numel() == 0:
        raise ValueError("the batch has no completion tokens to train on")
    loss = -token_logps.mean()
    return loss, {"num_tokens": float(token_logps.numel()), "mean_token_logp": float(-loss.detach())}


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

FORMATS = {
    "prompt-completion": ("prompt", "completion"),
    "conversational": ("messages",),
    "language modeling": ("text",),
}


def _render(prompt_msgs: list[dict], completion_msgs: list[dict], tokenizer) -> tuple[str, str]:
    from rlsurvey.data import _render_answer, _render_prompt

    prompt = _render_prompt(prompt_msgs, tokenizer)
    if getattr(tokenizer, "chat_template", None):
        whole = tokenizer.apply_chat_template(prompt_msgs + completion_msgs, tokenize=False)
        if not whole.startswith(prompt):
            raise ValueError(
                "the chat template renders the conversation without the prompt as its prefix (it rewrites "
                "earlier turns); pass prompt and completion as strings instead"
            )
        return prompt, whole[len(prompt) :]
    return prompt, _render_answer(completion_msgs)


def _rows(ds, tokenizer) -> tuple[list[str], list[str], bool]:
    """(prompts, completions, whether the prompt is trained on too: language modeling) as strings."""
    from rlsurvey.data import _check_messages, _is_conversation

    cols = set(getattr(ds, "column_names", None) or [])
    if not cols:
        raise TypeError(f"the dataset must be a datasets.Dataset with named columns, got {type(ds).__name__}")
    if len(ds) == 0:
        raise ValueError("the SFT dataset has no rows")
    if "messages" in cols:
        prompts, completions = [], []
        for i, msgs in enumerate(ds["messages"]):
            _check_messages(msgs, f"row {i}", "messages")
            last = max((j for j, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None:
                raise ValueError(f"column 'messages' row {i} has no assistant turn to train on")
            p, c = _render(msgs[:last], msgs[last : last + 1], tokenizer)
            prompts.append(p)
            completions.append(c)
        return prompts, completions, False
    if "text" in cols and "completion" not in cols:
        texts = list(ds["text"])
        _all_strings(texts, "text")
        return ["" for _ in texts], texts, True
    need = FORMATS["prompt-completion"]
    missing = [c for c in need if c not in cols]
    if missing:
        raise ValueError(
            "SFT data must have the columns ['prompt', 'completion'] (prompt-completion), ['messages'] "
            f"(conversational) or ['text'] (language modeling); found {sorted(cols)}, missing {missing}"
        )
    prompts, completions = list(ds["prompt"]), list(ds["completion"])
    if prompts and _is_conversation(prompts[0]):
        out = [_render(p, c, tokenizer) for p, c in zip(prompts, completions)]
        return [p for p, _ in out], [c for _, c in out], False
    _all_strings(prompts, "prompt")
    _all_strings(completions, "completion")
    return prompts, completions, False


def sft_columns(ds) -> str:
    """Check an SFT dataset's columns and every row (no tokenizer needed); returns its format, a key of
    `FORMATS`. The errors name the missing column, or the row and column at fault."""
    cols = set(getattr(ds, "column_names", None) or [])
    _rows(ds, None)
    if "messages" in cols:
        return "conversational"
    return "language modeling" if "text" in cols and "completion" not in cols else "prompt-completion"


def _all_strings(values: list, col: str) -> None:
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise TypeError(f"column {col!r} must hold strings; row {bad} holds {type(values[bad]).__name__}")


def tokenize_sft(ds, tokenizer, config: SFTConfig | None = None, limit: int | None = None):
    """(prompt ids, completion ids): two lists of int64 tensors, one pair per example, checked.

    The completion gets EOS when `add_eos`. Without `completion_only_loss` (and for language-modeling data)
    the prompt's tokens move into the completion, all but the first (which has nothing to be predicted
    from). An example longer than `max_length` (default `limit`, the model's context) is an error that
    names the row and the lengths: cutting it would train on a completion without its end, or on an
    answer without its question."""
    c = config or SFTConfig()
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer must have a pad token; see rlsurvey.lm.prepare_tokenizer")
    if c.add_eos and tokenizer.eos_token_id is None:
        raise ValueError("add_eos=True needs a tokenizer with an eos token (eos_token_id is None)")
    prompts, completions, whole = _rows(ds, tokenizer)
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if c.add_eos else []
    bound = c.max_length or limit
    what = "max_length" if c.max_length else "the model's context"
    out_p, out_c = [], []
    for i, (p, y) in enumerate(zip(p_ids, c_ids)):
        if not y:
            raise ValueError(f"column {'text' if whole else 'completion'!r} row {i} has no tokens")
        if not whole and not p:
            raise ValueError(f"column 'prompt' row {i} has no tokens: {prompts[i]!r}")
        y = y + eos
        if whole or not c.completion_only_loss:
            p, y = (p + y)[:1], (p + y)[1:]
        if bound is not None and len(p) + len(y) > bound:
            if len(p) >= bound:
                raise ValueError(
                    f"row {i}: the prompt has {len(p)} tokens, as many as or more than {what} ({bound}), "
                    "so no completion token fits after it; shorten the prompt or raise max_length"
                )
            raise ValueError(
                f"row {i}: prompt ({len(p)} tokens) + completion ({len(y)} tokens, EOS included) = "
                f"{len(p) + len(y)} tokens, more than {what} ({bound})"
            )
        out_p.append(torch.tensor(p, dtype=torch.long))
        out_c.append(torch.tensor(y, dtype=torch.long))
    return out_p, out_c


class _SFTData:
    def __init__(self, ds, tokenizer, config: SFTConfig, limit: int | None):
        self.prompt, self.completion = tokenize_sft(ds, tokenizer, config, limit)
        self.pad_id = tokenizer.pad_token_id
        self.n_tokens = [len(y) for y in self.completion]

    def __len__(self) -> int:
        return len(self.prompt)


# ----------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------


class SFTTrainer(SupervisedTrainer):
    """Fine-tune `model` (in place) on demonstrations; `train()` returns the history.

    History rows (TRL's names where they exist): loss (mean NLL per completion token), mean_token_logp,
    num_tokens (completion tokens in the step), grad_norm, learning_rate, step, epoch. `evaluate()` gives
    the same on an eval set, prefixed eval_. Checkpoints, resuming, NaN stops and signals as in the other
    trainers (`rlsurvey.algos.supervised`).
    """

    progress_name = "SFT"

    def __init__(self, model, tokenizer, train_dataset, config: SFTConfig | None = None, eval_dataset=None):
        c = SFTConfig() if config is None else config
        if not isinstance(c, SFTConfig):
            raise TypeError(f"config must be an SFTConfig, got {type(c).__name__}")
        self._init_model(model, tokenizer, c)
        limit = context_length(model)
        self.train_data = _SFTData(train_dataset, tokenizer, c, limit)
        self.eval_data = _SFTData(eval_dataset, tokenizer, c, limit) if eval_dataset is not None else None
        self.packing = c.packing and self._packing_is_exact()
        self._init_optimization(model.parameters())

    def _batch(self, data: _SFTData, idx) -> SequenceBatch:
        return SequenceBatch(
            [data.prompt[i] for i in idx], [data.completion[i] for i in idx], data.pad_id, self.packing,
            self.device,
        )  # fmt: skip

    def _packing_is_exact(self) -> bool:
        idx = range(min(8, len(self.train_data)))
        data = self.train_data
        prompts, completions = [data.prompt[i] for i in idx], [data.completion[i] for i in idx]
        return packing_is_exact(self.model, prompts, completions, data.pad_id)

    def compute_loss(self, idx, data: _SFTData | None = None) -> tuple[torch.Tensor, dict]:
        """The mean NLL of the completion tokens of examples `idx` of `data` (default: the training data)."""
        data = self.train_data if data is None else data
        tok, owner = self._batch(data, list(idx)).token_logps(self.model, self.config.fused_lm_head)
        return sft_loss(tok, owner)

    def micro_weight(self, local: list[int], batch: list[int]) -> float:
        """A micro-batch's share of the step's completion tokens: the step's loss is the mean over them."""
        tokens = self.train_data.n_tokens
        return sum(tokens[i] for i in local) / sum(tokens[i] for i in batch)

    @torch.no_grad()
    def evaluate(self, dataset=None, batch_size: int = 64) -> dict:
        """eval_loss (mean NLL per completion token) and eval_mean_token_logp on `dataset` (default: the
        trainer's eval_dataset)."""
        if dataset is None and self.eval_data is None:
            raise ValueError("evaluate() needs a dataset or an eval_dataset given to SFTTrainer; got neither")
        data = self.eval_data if dataset is None else _SFTData(dataset, self.tokenizer, self.config,
                                                               context_length(self.model))  # fmt: skip
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        try:
            for s in range(0, len(data), batch_size):
                tok, _ = self._batch(data, range(s, min(s + batch_size, len(data)))).token_logps(self.model)
                total, count = total + float(tok.sum()), count + tok.numel()
        finally:
            self.model.train(was_training)
        return {"eval_loss": -total / count, "eval_mean_token_logp": total / count, "eval_num_tokens": count}
