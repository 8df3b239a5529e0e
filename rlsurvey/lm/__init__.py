"""Language models as policies: tiny model configs, loading, generation, log-probs, KL and entropy.

Survey section 2.2 of arXiv 2412.10400 (the LM as a policy: state = prompt and tokens so far, action = next
token, episode = a response, reward at its end). Everything works for any Hugging Face causal LM; the tiny
shipped ones ("reviews-base", "arith-base", "reason-base") are trained by `python -m rlsurvey.lm.pretrain`.

| module        | what it holds                                                                 |
|---------------|-------------------------------------------------------------------------------|
| models.py     | tiny Llama configs, `load_model` / `load_tokenizer` for any causal LM          |
| tokenizer.py  | the worlds' tokenizers (byte-level BPE, per-character)                         |
| generation.py | batched sampling with left padding, temperature, top-k / top-p, EOS handling   |
| logprobs.py   | per-token and per-sequence log-probs of a response, entropies                  |
| kl.py         | KL to a reference: exact, and Schulman's k1 / k2 / k3 estimators               |
| pretrain.py   | the pretraining recipe of the shipped models; quality.py measures them         |
"""

from rlsurvey.lm.generation import GenerationOutput, filter_logits, generate, tokenize_prompts
from rlsurvey.lm.kl import exact_kl, kl_estimate, kl_k1, kl_k2, kl_k3, reference_kl
from rlsurvey.lm.logprobs import (
    ResponseLogprobs,
    masked_entropy,
    response_logits,
    response_logprobs,
    score_responses,
    sequence_logprobs,
    tokenize_responses,
)
from rlsurvey.lm.models import (
    TinyLlamaConfig,
    load_model,
    load_tokenizer,
    prepare_tokenizer,
    random_causal_lm,
    tiny_llama,
)

__all__ = [
    "GenerationOutput",
    "ResponseLogprobs",
    "TinyLlamaConfig",
    "exact_kl",
    "filter_logits",
    "generate",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "load_model",
    "load_tokenizer",
    "masked_entropy",
    "prepare_tokenizer",
    "random_causal_lm",
    "reference_kl",
    "response_logits",
    "response_logprobs",
    "score_responses",
    "sequence_logprobs",
    "tiny_llama",
    "tokenize_prompts",
    "tokenize_responses",
]
