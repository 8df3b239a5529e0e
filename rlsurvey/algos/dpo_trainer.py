"""A DPO trainer for any Hugging Face causal LM and any preference dataset (survey sections 7 and 8).

Direct preference optimization (Rafailov et al., arXiv 2305.18290) turns preference pairs into a
classification loss on the policy's own log-probabilities, so training is a plain supervised loop: score the
chosen and rejected responses, compare with a frozen reference, step. `loss_type` picks any loss of
`rlsurvey.algos.dpo.preference_loss` (DPO, SLiC hinge, IPO, cDPO, robust DPO, DPO-Positive, β-DPO, SimPO,
ORPO) or an unpaired loss of `rlsurvey.algos.kto` (KTO, arXiv 2402.01306; NPO, arXiv 2404.05868).

Where the speed comes from, and why each choice is exact:

- Tokenized once. Chosen and rejected go through ONE forward pass: the batch holds all 2B sequences.
- Packing. Reviews, answers and chat turns vary in length, so a padded batch is mostly padding. The 2B
  sequences (prompt + response) are packed first-fit into rows as wide as the longest one; position ids
  restart at 0 for every sequence, which Hugging Face models read as "packed" and answer with a
  block-diagonal causal mask, so no token attends across sequences and every log-prob equals the padded
  one. The trainer checks this equality on the first batch and falls back to padding if a model disagrees.
- Only the response positions reach the LM head; log-probs go through `rlsurvey.kernels` (`token_logprobs`,
  or `fused_linear_token_logprobs` with `fused_lm_head`, which never builds [tokens, vocab] logits). The
  padded path is `rlsurvey.lm.logprobs.response_logprobs`, the course's reference.
- `precompute_ref_log_probs`: the reference scores the data once, before the first step, so no reference
  forward runs during training and, when no separate reference is given, no copy of the model is made: the
  policy at step 0 *is* the reference.

Data formats (TRL's): paired `prompt`/`chosen`/`rejected` strings (or conversations, see `rlsurvey.data`),
or token ids `prompt_ids`/`chosen_ids`/`rejected_ids` taken exactly as given (no EOS added: what online DPO
needs to train on the very tokens it sampled); for KTO and NPO also unpaired `prompt`/`completion`/`label`.
Paired data is unpaired as chosen -> desirable, rejected -> undesirable; NPO trains only on undesirable
responses (the forget set).
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass

import torch

from rlsurvey.algos.dpo import LOSS_TYPES, REFERENCE_FREE, preference_loss
from rlsurvey.algos.kto import kto_loss, kto_reference_point, npo_loss
from rlsurvey.algos.rollout import context_length, disable_dropout
from rlsurvey.algos.supervised import SupervisedTrainer
from rlsurvey.kernels import fused_linear_token_logprobs, token_logprobs
from rlsurvey.lm.logprobs import response_logprobs

__all__ = [
    "ALL_LOSS_TYPES",
    "UNPAIRED",
    "DPOConfig",
    "DPOTrainer",
    "SequenceBatch",
    "packed_logps",
    "packing_is_exact",
    "padded_logps",
]

UNPAIRED = ("kto", "npo")
ALL_LOSS_TYPES = LOSS_TYPES + UNPAIRED


@dataclass
class DPOConfig:
    loss_type: str = "sigmoid"  # a preference_loss type (rlsurvey.algos.dpo.LOSS_TYPES), or "kto" / "npo"
    beta: float = 0.1  # β: KL strength (SimPO: reward scale; ORPO: weight λ of the odds-ratio term)
    label_smoothing: float = 0.0  # ε, the assumed label-flip rate of cdpo and robust, in [0, 0.5)
    learning_rate: float = 5e-5  # AdamW peak rate (TRL's 1e-6 suits billions of parameters, not tiny models)
    batch_size: int = 8  # pairs (or unpaired examples) per micro-batch, over all processes together
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step: batch = batch_size x this
    max_steps: int | None = None  # optimizer steps; None: num_epochs passes over the data
    num_epochs: float = 1.0  # passes over the data when max_steps is None
    lr_scheduler: str = "linear"  # "linear" (decay to 0 after warm-up, TRL's default) or "constant"
    warmup_steps: int = 0  # linear warm-up from 0 to learning_rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decay rates
    adam_epsilon: float = 1e-8  # AdamW denominator guard
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (None: no clipping)
    max_prompt_length: int | None = None  # keep only the LAST this many prompt tokens (None: all)
    max_completion_length: int | None = None  # keep only the FIRST this many response tokens, EOS included
    add_eos: bool = True  # end every response with EOS (a finished answer), as TRL does
    precompute_ref_log_probs: bool = True  # the reference scores the data once; none runs during training
    ref_batch_size: int = 64  # examples per no-grad pass when precomputing and evaluating
    packing: bool = True  # pack sequences into rows instead of padding (checked exact; else padding)
    fused_lm_head: bool = False  # log-probs from hidden states and LM head, never full logits (large vocab)
    shuffle: bool = True  # reshuffle the data every epoch (False: dataset order, as in a benchmark)
    seed: int = 0  # seeds the shuffling
    disable_dropout: bool = True  # dropout would make the policy/reference log-ratio noisy even at step 0
    logging_steps: int = 1  # optimizer steps averaged into one history entry
    save_steps: int | None = None  # save output_dir/checkpoint-<step> every this many steps (None: never)
    save_total_limit: int | None = None  # keep only the newest this many checkpoints (None: all)
    output_dir: str | None = None  # checkpoints: HF directories (model, tokenizer, trainer_state.json)
    resume_from_checkpoint: str | None = None  # a checkpoint directory, or "latest" in output_dir
    progress: bool = True  # show a tqdm progress bar
    ipo_length_normalize: bool = True  # IPO on per-token mean log-ratios (see rlsurvey.algos.dpo)
    dpop_lambda: float = 50.0  # λ of DPO-Positive: penalty weight when log π(y_w) drops below the reference
    bdpo_alpha: float = 0.6  # α of β-DPO: how strongly β follows the batch's implicit-reward margin
    bdpo_momentum: float = 0.9  # β-DPO's running baseline M_0 <- m M_0 + (1 - m) M_batch
    simpo_gamma: float = 0.5  # SimPO's target reward margin γ
    kto_desirable_weight: float = 1.0  # λ_D of KTO
    kto_undesirable_weight: float = 1.0  # λ_U of KTO
    distributed: bool | None = None  # Accelerate data parallelism; None: when launched on several processes

    def __post_init__(self):
        if self.loss_type not in ALL_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {list(ALL_LOSS_TYPES)}, got {self.loss_type!r}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            raise ValueError(f"beta must be a positive number, got {self.beta!r}")
        if self.lr_scheduler not in ("linear", "constant"):
            raise ValueError(f"lr_scheduler must be 'linear' or 'constant', got {self.lr_scheduler!r}")
        for name in ("batch_size", "gradient_accumulation_steps", "ref_batch_size", "logging_steps"):
            _check_int(name, getattr(self, name), none_ok=False)
        for name in (
            "max_steps",
            "save_steps",
            "save_total_limit",
            "max_prompt_length",
            "max_completion_length",
        ):
            _check_int(name, getattr(self, name), none_ok=True)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_steps is None and not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be > 0 when max_steps is None, got {self.num_epochs}")
        if self.save_steps is not None and self.output_dir is None:
            raise ValueError("save_steps needs an output_dir, got output_dir=None")
        from rlsurvey.checks import check_fields

        check_fields(self, {
            "beta": ">0", "label_smoothing": "[0,0.5)", "learning_rate": ">0", "num_epochs": ">0",
            "warmup_steps": "int>=0", "weight_decay": ">=0", "adam_betas": "[0,1)", "adam_epsilon": ">0",
            "max_grad_norm": ">0", "dpop_lambda": ">=0", "bdpo_alpha": ">=0", "bdpo_momentum": "[0,1)",
            "simpo_gamma": ">=0", "kto_desirable_weight": ">=0", "kto_undesirable_weight": ">=0",
        })  # fmt: skip

    @property
    def needs_reference(self) -> bool:
        return self.loss_type not in REFERENCE_FREE


def _check_int(name: str, value, none_ok: bool) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if none_ok else ''}, got {value!r}")


# ----------------------------------------------------------------------------------------------------------
# Log-probabilities of many (prompt, response) pairs in one forward pass
# ----------------------------------------------------------------------------------------------------------


# What some architectures do to the logits after the output layer, in their own forward: Gemma 2 and 3 cap
# them (cap * tanh(z / cap)), Cohere scales them, Granite divides them. A path that calls the output layer
# itself must do the same, or its log-probs are not the model's.
LOGIT_TRANSFORMS = {
    "final_logit_softcapping": lambda z, c: c * torch.tanh(z / c),
    "logit_scale": lambda z, c: z * c,
    "logits_scaling": lambda z, c: z / c,
}


def logit_transform(model):
    """(config attribute, function logits -> logits) of the transform `model` applies after its output
    layer, or None when it applies none."""
    config = getattr(model, "config", None)
    for name, fn in LOGIT_TRANSFORMS.items():
        value = getattr(config, name, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            continue  # absent, or None / 0: the transform is off
        if name != "final_logit_softcapping" and value == 1:
            continue  # scaling by 1 changes nothing
        return name, functools.partial(fn, c=value)
    return None


def fused_logit_args(model) -> dict:
    """The keyword arguments of `fused_linear_token_logprobs` that reproduce the logit transforms of
    `LOGIT_TRANSFORMS` that `model` applies: {"logit_scale": a, "softcap": c}, empty when it applies none."""
    config = getattr(model, "config", None)

    def value(name):
        v = getattr(config, name, None)
        return None if isinstance(v, bool) or not isinstance(v, (int, float)) or v == 0 else float(v)

    args = {}
    scale = (value("logit_scale") or 1.0) / (value("logits_scaling") or 1.0)
    if scale != 1.0:
        args["logit_scale"] = scale
    if value("final_logit_softcapping") is not None:
        args["softcap"] = value("final_logit_softcapping")
    return args


def _lm_head_logps(model, hidden: torch.Tensor, targets: torch.Tensor, fused: bool) -> torch.Tensor:
    """log π(target) from hidden states [N, H] through the model's output layer (and the logit transform
    its forward applies, `logit_transform`), [N] float32."""
    head = model.get_output_embeddings()
    if fused:
        if getattr(head, "bias", None) is not None:
            raise ValueError("fused_lm_head=True needs an LM head without bias; use fused_lm_head=False")
        return fused_linear_token_logprobs(hidden, head.weight, targets, **fused_logit_args(model))
    transform = logit_transform(model)
    logits = head(hidden)
    return token_logprobs(logits if transform is None else transform[1](logits), targets)


def _first_fit(lens: list[int], width: int) -> tuple[list[int], list[tuple[int, int]]]:
    """First-fit decreasing into rows of `width`: (each row's filled length, each sequence's (row, col))."""
    fill: list[int] = []
    place = [(0, 0)] * len(lens)
    for i in sorted(range(len(lens)), key=lens.__getitem__, reverse=True):
        row = next((k for k, f in enumerate(fill) if f + lens[i] <= width), len(fill))
        fill += [0] * (row == len(fill))
        place[i] = (row, fill[row])
        fill[row] += lens[i]
    return fill, place


def _pack_rows(lens: list[int]) -> tuple[int, list[int], list[tuple[int, int]]]:
    """The row width among L, 9L/8, ..., 2L (L the longest sequence) whose first-fit packing has the fewest
    positions (rows x width), the narrowest among equals; then its fill and places. Rows exactly as wide as
    the longest sequence leave the tails of rows of short sequences empty (17% of the positions of a DPO
    batch of the reviews world); a little wider, the tails fill and the forward and backward passes do less
    work, while attention within a row, quadratic in its width, stays small."""
    longest = max(lens)
    best = None
    for width in sorted({longest + (k * longest) // 8 for k in range(9)}):  # 9 widths: [L, 2L] in L / 8 steps
        fill, place = _first_fit(lens, width)
        if best is None or len(fill) * width < len(best[1]) * best[0]:
            best = (width, fill, place)
    return best


class SequenceBatch:
    """n (prompt, response) token sequences laid out once for a forward pass, packed or padded.

    | argument  | shape     | meaning                                              |
    |-----------|-----------|------------------------------------------------------|
    | prompts   | n x [P_i] | prompt token ids (int64 tensors, no padding)         |
    | responses | n x [R_i] | response token ids (EOS included when wanted)        |

    Packed: sequences go first-fit, longest first, into rows (`_pack_rows`); position ids restart at 0 per
    sequence, and the block-diagonal causal mask they imply is built once per batch and passed to SDPA and
    eager attention (other implementations, such as flash attention, read packed sequences from the
    position ids alone). Column c of a row predicts column c + 1, so response token t of a
    sequence starting at column o is read at column o + P_i - 1 + t. Padded: prompts on the left, responses
    on the right, scored by `rlsurvey.lm.logprobs.response_logprobs`, the course's reference path.
    """

    def __init__(self, prompts, responses, pad_id: int, packing: bool = True, device=None, width=None):
        """`width` fixes the packed rows' width (at least the longest sequence); None chooses it
        (`_pack_rows`)."""
        self.n, self.packing = len(prompts), packing
        if not packing:
            pad = torch.nn.utils.rnn.pad_sequence
            ones = [torch.ones_like(p) for p in prompts], [torch.ones_like(r) for r in responses]
            self.p_ids = pad(prompts, batch_first=True, padding_value=pad_id, padding_side="left").to(device)
            self.p_mask = pad(ones[0], batch_first=True, padding_side="left").to(device)
            self.r_ids = pad(responses, batch_first=True, padding_value=pad_id).to(device)
            self.r_mask = pad(ones[1], batch_first=True).to(device)
            return
        plen, lens = [len(p) for p in prompts], [len(p) + len(r) for p, r in zip(prompts, responses)]
        width, fill, place = _pack_rows(lens) if width is None else (width, *_first_fit(lens, width))
        rows = len(fill)
        ids = torch.full((rows * width,), pad_id, dtype=torch.long)
        pos = torch.arange(width).repeat(rows)
        targets = torch.full((rows * width,), -100, dtype=torch.long)
        owner = torch.full((rows * width,), -1, dtype=torch.long)
        # every token of every sequence at once: its flat position row * width + column, and its offset
        # within its sequence (the position id); token k predicts token k + 1 of the same sequence, and is
        # scored where that one is a response token (offsets P_i - 1 to n_i - 2)
        seq = torch.cat([t for p, r in zip(prompts, responses) for t in (p, r)]).long()
        n_t, m_t = torch.tensor(lens), torch.tensor(plen)
        first = torch.repeat_interleave(n_t.cumsum(0) - n_t, n_t)  # index in `seq` of each token's first
        offset = torch.arange(len(seq)) - first
        start = torch.tensor([row * width + o for row, o in place])
        flat = torch.repeat_interleave(start, n_t) + offset
        ids[flat], pos[flat] = seq, offset
        who = torch.repeat_interleave(torch.arange(len(lens)), n_t)
        scored = (offset >= m_t[who] - 1) & (offset < n_t[who] - 1)
        targets[flat[scored]] = seq[scored.nonzero().squeeze(1) + 1]
        owner[flat[scored]] = who[scored]
        ids, pos, targets, owner = (t.view(rows, width) for t in (ids, pos, targets, owner))
        # the block-diagonal causal mask the position ids imply, built once and given to every model that
        # scores this batch (the policy and a live reference) instead of each deriving it again
        seq_id = torch.full((rows * width,), -1, dtype=torch.long)
        seq_id[flat] = who
        seq_id = seq_id.view(rows, width)
        same = (seq_id[:, :, None] == seq_id[:, None, :]) & (seq_id[:, :, None] >= 0)
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        self.mask = ((same & causal) | torch.eye(width, dtype=torch.bool))[:, None].to(device)  # pads: self
        for row, f in enumerate(fill):
            pos[row, f:] -= f  # a row's unused tail is one more sequence, starting at position 0
        keep = (targets != -100).flatten()
        self.ids, self.pos, self.keep = ids.to(device), pos.to(device), keep.to(device)
        self.targets, self.owner = targets.flatten()[keep].to(device), owner.flatten()[keep].to(device)

    def token_logps(self, model, fused_lm_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π(y_t | x, y_<t) of every response token [T] float32, the index of its sequence [T]): the
        per-token terms that SFT's cross-entropy averages and `logps` sums per sequence."""
        if not self.packing:
            args = (self.p_ids, self.p_mask, self.r_ids, self.r_mask)
            if not fused_lm_head:
                tok = response_logprobs(model, *args).token_logps
            else:
                attn = torch.cat([self.p_mask, self.r_mask], 1)
                pos = (attn.cumsum(-1) - 1).clamp(min=0)
                ids = torch.cat([self.p_ids, self.r_ids], 1)
                out = model.base_model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False)
                h = out.last_hidden_state[:, self.p_ids.shape[1] - 1 : -1]  # (B, R, H): row t predicts t
                targets = self.r_ids.masked_fill(self.r_mask == 0, -100).flatten()
                tok = _lm_head_logps(model, h.reshape(-1, h.shape[-1]), targets, True).view(self.r_ids.shape)
            keep = self.r_mask.bool()
            owner = torch.arange(self.n, device=keep.device)[:, None].expand_as(keep)
            return tok[keep], owner[keep]
        hidden = model.base_model(
            input_ids=self.ids,
            position_ids=self.pos,
            attention_mask=self._attention_mask(model),
            use_cache=False,
        ).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1])[self.keep]  # (tokens, H): response positions only
        return _lm_head_logps(model, hidden, self.targets, fused_lm_head), self.owner

    def _attention_mask(self, model) -> torch.Tensor | None:
        """The packed rows' block-diagonal causal mask in the form the model's attention takes: boolean
        (True: attend) for SDPA, additive float for the eager implementation; None for any other (flash
        attention reads packed sequences from the position ids alone)."""
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if impl == "sdpa":
            return self.mask
        if impl == "eager":
            dtype = next(model.parameters()).dtype
            return torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device).masked_fill(
                ~self.mask, torch.finfo(dtype).min
            )
        return None

    def logps(self, model, fused_lm_head: bool = False) -> torch.Tensor:
        """[n] summed response log-probs Σ_t log π(y_t | x, y_<t) (eq. 1 of rlsurvey.lm), float32."""
        tok, owner = self.token_logps(model, fused_lm_head)
        return torch.zeros(self.n, dtype=tok.dtype, device=tok.device).index_add(0, owner, tok)


def packed_logps(model, prompts, responses, pad_id: int, fused_lm_head: bool = False) -> torch.Tensor:
    """`SequenceBatch(..., packing=True).logps(model)`: every sequence's log-prob from one packed forward."""
    device = next(model.parameters()).device
    return SequenceBatch(prompts, responses, pad_id, True, device).logps(model, fused_lm_head)


def padded_logps(model, prompts, responses, pad_id: int, fused_lm_head: bool = False) -> torch.Tensor:
    """`SequenceBatch(..., packing=False).logps(model)`: the padded reference of `packed_logps`."""
    device = next(model.parameters()).device
    return SequenceBatch(prompts, responses, pad_id, False, device).logps(model, fused_lm_head)


@torch.no_grad()
def packing_is_exact(model, prompts, responses, pad_id: int) -> bool:
    """Whether packed and padded log-probs of these sequences agree (a model that ignores packed position
    ids would let sequences attend to each other); warns and returns False when they do not."""
    was_training = model.training
    model.eval()
    try:
        a = packed_logps(model, prompts, responses, pad_id)
        b = padded_logps(model, prompts, responses, pad_id)
    except (TypeError, ValueError, RuntimeError) as exc:
        warnings.warn(f"packing is off: the packed forward failed ({exc})", stacklevel=4)
        return False
    finally:
        model.train(was_training)
    tol = 1e-3 if a.dtype in (torch.float32, torch.float64) else 5e-2
    if not torch.allclose(a, b, atol=tol * max(1.0, float(b.abs().max())), rtol=0):
        warnings.warn("packing is off: this model's packed log-probs differ from padded ones", stacklevel=4)
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# Data: checked and tokenized once
# ----------------------------------------------------------------------------------------------------------


def _columns(ds, loss_type: str, tokenizer) -> tuple[str, dict]:
    """("paired" | "unpaired", columns as lists); clear errors for missing or malformed columns."""
    from rlsurvey.data import to_standard

    cols = set(getattr(ds, "column_names", None) or [])
    if not cols:
        raise TypeError(f"the dataset must be a datasets.Dataset with named columns, got {type(ds).__name__}")
    if loss_type in UNPAIRED and {"completion", "label"} <= cols:
        if "prompt" not in cols:
            raise ValueError(
                "an unpaired dataset must have the columns ['prompt', 'completion', 'label']; "
                f"found {sorted(cols)}, missing ['prompt']"
            )
        labels = list(ds["label"])
        if not all(isinstance(x, bool) for x in labels):
            raise TypeError("column 'label' must hold bools (True: desirable), got another type")
        return "unpaired", {
            "prompt": list(ds["prompt"]),
            "completion": list(ds["completion"]),
            "label": labels,
        }
    if {"prompt_ids", "chosen_ids", "rejected_ids"} <= cols:  # already tokenized (TRL's names): used as is
        prompts, chosen, rejected = (
            [list(r) for r in ds[k]] for k in ("prompt_ids", "chosen_ids", "rejected_ids")
        )
    else:
        ds = to_standard(ds, tokenizer)  # names the missing columns, e.g. a dataset without 'prompt'
        prompts, chosen, rejected = list(ds["prompt"]), list(ds["chosen"]), list(ds["rejected"])
    same = [i for i, (c, r) in enumerate(zip(chosen, rejected)) if c == r]
    if same:
        raise ValueError(
            f"chosen must differ from rejected in every pair (an identical pair carries no preference), "
            f"but {len(same)} rows have chosen == rejected, e.g. row {same[0]}: {chosen[same[0]]!r}"
        )
    if loss_type in UNPAIRED:  # TRL's convention: chosen -> desirable, rejected -> undesirable
        n = len(prompts)
        return "unpaired", {
            "prompt": prompts * 2,
            "completion": chosen + rejected,
            "label": [True] * n + [False] * n,
        }
    return "paired", {"prompt": prompts, "chosen": chosen, "rejected": rejected}


class _Tokenized:
    """Token ids of every example; `ref` receives the reference log-probs once they are computed.

    limit: the model's context. An example longer than it loses prompt tokens from the left (the prompt
    keeps at least one); a response that alone is too long also loses its last tokens.
    """

    def __init__(self, ds, tokenizer, config: DPOConfig, limit: int | None = None):
        self.kind, cols = _columns(ds, config.loss_type, tokenizer)
        if config.loss_type == "npo":  # NPO only ever sees the responses to forget
            keep = [i for i, lab in enumerate(cols["label"]) if not lab]
            if not keep:
                raise ValueError(
                    "loss_type='npo' needs undesirable examples (label False, or rejected); got none"
                )
            cols = {k: [v[i] for i in keep] for k, v in cols.items()}
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer must have a pad token; see rlsurvey.lm.prepare_tokenizer")
        if config.add_eos and tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True needs a tokenizer with an eos token (eos_token_id is None)")
        self.pad_id = tokenizer.pad_token_id
        eos = [tokenizer.eos_token_id] if config.add_eos else []
        pl, cl = config.max_prompt_length, config.max_completion_length

        def encode(name: str, is_prompt: bool) -> list[torch.Tensor]:
            texts = cols[name]
            if all(isinstance(t, list) for t in texts):  # token ids: taken exactly, EOS or not
                rows, end = texts, []
            else:
                bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
                if bad is not None:
                    got = type(texts[bad]).__name__
                    raise TypeError(f"column {name!r} must hold strings; row {bad} holds {got}")
                rows, end = tokenizer(texts, add_special_tokens=False)["input_ids"], eos
            out = []
            for i, ids in enumerate(rows):
                if is_prompt:
                    ids = ids[-pl:] if pl else ids
                else:
                    ids = (ids + end)[:cl] if cl else ids + end
                if not ids:
                    raise ValueError(f"column {name!r} row {i} has no tokens: {texts[i]!r}")
                out.append(torch.tensor(ids, dtype=torch.long))
            return out

        self.prompt = encode("prompt", True)
        self.responses = {c: encode(c, False) for c in cols if c in ("chosen", "rejected", "completion")}
        if self.kind == "unpaired":
            self.label = torch.tensor(cols["label"], dtype=torch.bool)
            comp = self.responses["completion"]  # KTO's z₀: prompt i with the response of example i + 1
            self.responses["kl"] = comp[1:] + comp[:1]
        if limit is not None:
            self._fit(limit)
        self.ref: dict[str, torch.Tensor] = {}  # response column -> [N] reference log-probs

    def _fit(self, limit: int) -> None:
        for i, prompt in enumerate(self.prompt):
            longest = max(len(r[i]) for r in self.responses.values())
            if len(prompt) + longest <= limit:
                continue
            keep = max(1, limit - longest)
            self.prompt[i] = prompt[-keep:]
            for r in self.responses.values():
                r[i] = r[i][: limit - keep]
            if self.kind == "paired" and torch.equal(*(self.responses[c][i] for c in ("chosen", "rejected"))):
                raise ValueError(
                    f"row {i}: chosen and rejected are the same in their first {limit - keep} tokens, all "
                    f"that fits in the model's context of {limit} tokens; shorten the responses"
                )

    def __len__(self) -> int:
        return len(self.prompt)

    def lengths(self, idx, col: str) -> torch.Tensor:
        return torch.tensor([len(self.responses[col][i]) for i in idx], dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------------------


class DPOTrainer(SupervisedTrainer):
    """Train `model` (in place) on preference data with `config.loss_type`; `train()` returns the history.

    tokenizer: the model's, with a pad token. ref_model: the frozen reference (default: the model as it is
    now). eval_dataset: scored by `evaluate()`; its reference log-probs are precomputed with the training
    data's.

    Several processes (`accelerate launch --num_processes N script.py`, see `rlsurvey.distributed`): the
    batch sizes stay global; every process scores its slice of each micro-batch, DDP averages the gradients
    so that a step equals the one-process step, metrics are those of the whole batch, and only the main
    process saves. β-DPO's margin baseline and KTO's z₀ are batch statistics taken on each process's slice.
    """

    def __init__(self, model, tokenizer, train_dataset, config: DPOConfig | None = None, ref_model=None,
                 eval_dataset=None):  # fmt: skip
        c = DPOConfig() if config is None else config
        if not isinstance(c, DPOConfig):
            raise TypeError(f"config must be a DPOConfig, got {type(c).__name__}")
        if ref_model is model:
            raise ValueError(
                "ref_model must be a separate model (None: a frozen copy of model), got model itself"
            )
        self._init_model(model, tokenizer, c)
        self.dist.place(ref_model)
        limit = context_length(model)  # longer examples are cut to fit, prompt first (see _Tokenized)
        self.train_data = _Tokenized(train_dataset, tokenizer, c, limit)
        self.eval_data = _Tokenized(eval_dataset, tokenizer, c, limit) if eval_dataset is not None else None
        self.packing = c.packing and self._packing_is_exact()
        self.ref_model = None
        if c.needs_reference:
            reference = model if ref_model is None else ref_model
            if c.precompute_ref_log_probs:
                for data in filter(None, (self.train_data, self.eval_data)):
                    self._precompute(reference, data)
            else:
                self.ref_model = copy.deepcopy(model) if ref_model is None else ref_model
                self.ref_model.requires_grad_(False).eval()
                if c.disable_dropout:
                    disable_dropout(self.ref_model)
        self._init_optimization(model.parameters())
        self._bdpo_baseline: float | None = None

    # --- log-probs ---------------------------------------------------------------------------------------

    def _batch(self, data: _Tokenized, idx, cols) -> SequenceBatch:
        """Rows `idx` of each response column in `cols`, in that order, laid out for ONE forward pass."""
        prompts = [data.prompt[i] for c in cols for i in idx]
        responses = [data.responses[c][i] for c in cols for i in idx]
        return SequenceBatch(prompts, responses, data.pad_id, self.packing, self.device)

    def _packing_is_exact(self) -> bool:
        idx = range(min(4, len(self.train_data)))
        cols = [c for c in self.train_data.responses if c != "kl"]
        prompts = [self.train_data.prompt[i] for c in cols for i in idx]
        responses = [self.train_data.responses[c][i] for c in cols for i in idx]
        return packing_is_exact(self.model, prompts, responses, self.train_data.pad_id)

    @torch.no_grad()
    def _precompute(self, reference, data: _Tokenized) -> None:
        was_training = reference.training
        reference.eval()
        step, fused = self.config.ref_batch_size, self.config.fused_lm_head
        try:
            for col in data.responses:
                parts = [self._batch(data, range(s, min(s + step, len(data))), [col]).logps(reference, fused)
                         for s in range(0, len(data), step)]  # fmt: skip
                data.ref[col] = torch.cat(parts).float().cpu()
        finally:
            reference.train(was_training)

    def _scores(
        self, data: _Tokenized, idx, cols, reference: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(policy log-probs, reference log-probs or None) of rows `idx` of `cols`, concatenated. The live
        reference scores the very same packed batch as the policy; precomputed ones are looked up."""
        batch = self._batch(data, idx, cols)
        logps = batch.logps(self.model, self.config.fused_lm_head)
        if not reference:
            return logps, None
        if data.ref:
            i = torch.as_tensor(list(idx))
            return logps, torch.cat([data.ref[c][i] for c in cols]).to(self.device)
        if self.ref_model is None:
            raise ValueError(
                "these examples have no precomputed reference log-probs and no reference model is kept; pass "
                "them as eval_dataset when building the trainer, or set precompute_ref_log_probs=False"
            )
        with torch.inference_mode():  # cheaper than no_grad: no version counters or view tracking
            ref = batch.logps(self.ref_model, self.config.fused_lm_head)
        return logps, ref.clone()  # a normal tensor again, which autograd may save for the backward pass

    # --- the loss ----------------------------------------------------------------------------------------

    def compute_loss(self, idx, data: _Tokenized | None = None) -> tuple[torch.Tensor, dict]:
        """The configured loss on examples `idx` of `data` (default: the training data): (loss, metrics)."""
        data = self.train_data if data is None else data
        c, idx, n = self.config, list(idx), len(idx)
        if c.loss_type in UNPAIRED:
            logps, ref = self._scores(data, idx, ["completion"], reference=True)
            if c.loss_type == "npo":
                return npo_loss(logps, ref, c.beta)
            with torch.no_grad():  # z₀ is a detached baseline: no gradient through the mismatched pairs
                z0 = kto_reference_point(*self._scores(data, idx, ["kl"], reference=True))
            label = data.label[torch.as_tensor(idx)].to(self.device)
            return kto_loss(logps, ref, label, z0, c.beta, c.kto_desirable_weight, c.kto_undesirable_weight)
        # [2n]: chosen then rejected, from ONE forward pass of the policy (and one of a live reference)
        logps, ref = self._scores(data, idx, ["chosen", "rejected"], reference=c.needs_reference)
        return preference_loss(
            logps[:n], logps[n:], None if ref is None else ref[:n], None if ref is None else ref[n:],
            c.loss_type, c.beta, label_smoothing=c.label_smoothing,
            chosen_lengths=data.lengths(idx, "chosen").to(self.device),
            rejected_lengths=data.lengths(idx, "rejected").to(self.device),
            ipo_length_normalize=c.ipo_length_normalize, dpop_lambda=c.dpop_lambda, bdpo_alpha=c.bdpo_alpha,
            bdpo_margin_baseline=self._bdpo_baseline, simpo_gamma=c.simpo_gamma,
        )  # fmt: skip

    # --- training ----------------------------------------------------------------------------------------

    @property
    def progress_name(self) -> str:
        return f"{self.config.loss_type} training"

    def after_micro_batch(self, metrics: dict) -> None:
        c = self.config
        if c.loss_type == "bdpo":  # β-DPO's running baseline of batch margins, M_0
            m, b = float(metrics["bdpo/batch_margin"]), self._bdpo_baseline
            self._bdpo_baseline = m if b is None else c.bdpo_momentum * b + (1 - c.bdpo_momentum) * m

    def own_state(self) -> dict:
        return {"bdpo_baseline": self._bdpo_baseline}

    def set_own_state(self, own: dict) -> None:
        self._bdpo_baseline = own["bdpo_baseline"]

    def train(self, steps: int | None = None, callback=None) -> list[dict]:
        """Run `steps` optimizer steps (default: up to `num_steps`). Returns `history`: one dict per logged
        step with TRL's names (loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
        logps/chosen, logps/rejected, grad_norm, learning_rate) plus step and epoch; see
        `SupervisedTrainer.train` for callbacks, resuming and stopping."""
        return super().train(steps, callback)

    @torch.no_grad()
    def evaluate(self, dataset=None) -> dict:
        """The loss and its metrics, prefixed eval_, on `dataset` (default: the trainer's eval_dataset),
        averaged over examples. A new dataset needs a kept reference (precompute_ref_log_probs=False) unless
        the loss is reference-free."""
        limit = context_length(self.model)
        data = self.eval_data if dataset is None else _Tokenized(dataset, self.tokenizer, self.config, limit)
        if data is None:
            raise ValueError("evaluate() needs a dataset or an eval_dataset given to DPOTrainer; got neither")
        was_training = self.model.training
        self.model.eval()
        sums: dict[str, float] = {}
        try:
            for s in range(0, len(data), self.config.ref_batch_size):
                idx = range(s, min(s + self.config.ref_batch_size, len(data)))
                loss, metrics = self.compute_loss(idx, data)
                for k, v in {"loss": loss, **metrics}.items():
                    if not math.isnan(v := float(v)):
                        sums[k] = sums.get(k, 0.0) + v * len(idx) / len(data)
        finally:
            self.model.train(was_training)
        return {f"eval_{k}": v for k, v in sums.items()}
