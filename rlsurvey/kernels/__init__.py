"""Fused kernels for the hot spots of RL on language models, each with its PyTorch reference.

Survey sections 2.2, 4.2 and 7 of arXiv 2412.10400: every policy-gradient and preference method turns
logits into per-token log-probabilities, and PPO turns rewards and values into GAE advantages.

| function                       | module          | what it computes                                   |
|--------------------------------|-----------------|----------------------------------------------------|
| `token_logprobs`               | logprobs.py     | log softmax(logits / T)[targets], fused            |
| `token_entropy`                | entropy.py      | entropy of softmax(logits), fused                  |
| `token_logprobs_and_entropy`   | logprobs_entropy.py | both in one pass over [B, R, V] strided logits |
| `fused_linear_token_logprobs`  | fused_linear.py | log-probs from hidden states and the LM head,      |
|                                |                 | chunked so [tokens, vocab] logits never exist      |
| `gae`                          | gae.py          | GAE advantages and returns under a response mask   |

Each file holds the Triton kernel, its launcher, the `torch.autograd.Function` and the PyTorch reference.
On CUDA tensors the Triton kernels run when triton imports; elsewhere the (chunked, memory-efficient)
references do. `RLSURVEY_KERNELS=triton|torch|auto` or `backend=` forces a path (see `_dispatch.py`).
"""

from rlsurvey.kernels._dispatch import HAS_TRITON, interpreter_active, resolve_backend, use_interpreter
from rlsurvey.kernels.entropy import token_entropy, token_entropy_naive, token_entropy_reference
from rlsurvey.kernels.fused_linear import (
    fused_linear_token_logprobs,
    fused_linear_token_logprobs_naive,
    fused_linear_token_logprobs_reference,
)
from rlsurvey.kernels.gae import gae, gae_reference
from rlsurvey.kernels.logprobs import token_logprobs, token_logprobs_naive, token_logprobs_reference
from rlsurvey.kernels.logprobs_entropy import (
    token_logprobs_and_entropy,
    token_logprobs_and_entropy_naive,
    token_logprobs_and_entropy_reference,
)

__all__ = [
    "HAS_TRITON",
    "fused_linear_token_logprobs",
    "fused_linear_token_logprobs_naive",
    "fused_linear_token_logprobs_reference",
    "gae",
    "gae_reference",
    "interpreter_active",
    "resolve_backend",
    "token_entropy",
    "token_entropy_naive",
    "token_entropy_reference",
    "token_logprobs",
    "token_logprobs_and_entropy",
    "token_logprobs_and_entropy_naive",
    "token_logprobs_and_entropy_reference",
    "token_logprobs_naive",
    "token_logprobs_reference",
    "use_interpreter",
]
