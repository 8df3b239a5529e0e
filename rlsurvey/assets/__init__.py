"""Files the package ships: the tiny pretrained models of the synthetic worlds and small data tables.

Survey sections 2.2 and 3 of arXiv 2412.10400. The models are Hugging Face directories (config.json,
model.safetensors, tokenizer.json, README.md model card) trained by `python -m rlsurvey.lm.pretrain`;
models.csv is the survey's table of RL-enhanced LLMs (chapter 05).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS", "SHIPPED_MODELS", "WORLD_MODEL", "WORLD_OF", "model_path", "table_path"]

ASSETS = Path(__file__).resolve().parent
# name -> what it is
SHIPPED_MODELS = {
    "reviews-base": "tiny Llama pretrained on the reviews grammar (rlsurvey.tasks.reviews)",
    "arith-base": "tiny Llama pretrained on noisy arithmetic (rlsurvey.tasks.arithmetic)",
    "reason-base": "tiny Llama pretrained on reasoning chains, worked or direct (rlsurvey.tasks.reasoning)",
    "tool-base": "tiny Llama pretrained on sums and products, some with a calculator (rlsurvey.tasks.tools)",
}
WORLD_OF = {
    "reviews-base": "reviews",
    "arith-base": "arithmetic",
    "reason-base": "reasoning",
    "tool-base": "tools",
}
# world -> its shipped base model (read by the pretraining script, the command line and the reports)
WORLD_MODEL = {world: name for name, world in WORLD_OF.items()}


def model_path(name: str) -> Path:
    """Directory of a shipped model; `AutoModelForCausalLM.from_pretrained(model_path(name))` loads it."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"name must be one of {sorted(SHIPPED_MODELS)}, got {name!r}")
    path = ASSETS / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the shipped model {name!r} is missing at {path}; rebuild it with "
            f"`python -m rlsurvey.lm.pretrain --world {WORLD_OF[name]}`"
        )
    return path


def table_path(name: str = "models.csv") -> Path:
    """Path of a shipped data table (currently only "models.csv", the survey's model table)."""
    path = ASSETS / name
    if not path.is_file():
        raise ValueError(f"name must be a shipped table such as 'models.csv', got {name!r}")
    return path
