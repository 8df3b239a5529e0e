"""One name per concept in the trainers' configs, and the old names still accepted for a while.

The config dataclasses of the trainers once named one setting several ways (`clip_eps`, `cliprange`,
`clip_coef`; `checkpoint_dir` and `output_dir`; `epochs` for passes over a dataset in one config and over a
rollout in another). Each concept now has one name, Hugging Face's or TRL's where those have one:

| concept | name | old names | TRL's name |
|---|---|---|---|
| where checkpoints and outputs go | output_dir | checkpoint_dir (GRPO) | output_dir |
| save a checkpoint every N steps | save_steps | — | save_steps |
| evaluate every N steps | eval_steps | eval_every (GRPO, Pretrain) | eval_steps |
| step size | learning_rate | lr (PG, Pretrain, Lagrange) | learning_rate |
| step size of a separate critic | value_learning_rate | value_lr (PG) | — |
| Adam's ε | adam_epsilon | adam_eps (RLHFPPO, PPO) | adam_epsilon |
| linear warm-up steps | warmup_steps | warmup (Pretrain) | warmup_steps |
| gradient-norm clip | max_grad_norm | grad_clip (Pretrain) | max_grad_norm |
| passes over the dataset | num_epochs | epochs (Reward) | num_train_epochs |
| passes over a rollout | epochs_per_rollout | ppo_epochs (RLHFPPO), update_epochs (PPO) | num_ppo_epochs |
| the same in GRPO (μ) | epochs_per_rollout | epochs (GRPO) | num_iterations |
| minibatches per rollout and epoch | num_mini_batches | num_minibatches (PPO) | num_mini_batches |
| responses per gradient step | mini_batch_size | minibatch_size (GRPO) | mini_batch_size (PPO) |
| ε of the clipped policy ratio | clip_eps | cliprange (RLHFPPO), clip_coef (PPO) | cliprange; GRPO: epsilon |
| upper ε of an asymmetric clip | clip_eps_high | — | epsilon_high |
| clip range of the value | clip_eps_value | cliprange_value (RLHFPPO), clip_coef_vf (PPO) | cliprange_value |
| GAE λ | lam | gae_lambda (PPO) | lam |
| KL the adaptive β controller aims at | kl_target | target_kl (RLHFPPO) | — (OpenRLHF: kl_target) |
| KL that ends a PPO update early | target_kl (PPO) | — | target_kl (TRL 0.x) |
| least reward gap that makes a pair | min_reward_gap | min_score_gap (SelfRewarding) | — |

GRPO = `algos.grpo.GRPOConfig` (also RLOO's), RLHFPPO = `algos.rlhf_ppo.RLHFPPOConfig`, PPO =
`rl.ppo.PPOConfig`, PG = `rl.policy_gradient.PGConfig`, Pretrain = `lm.pretrain.PretrainConfig`, Reward =
`rewards.bradley_terry.RewardTrainingConfig`, SelfRewarding = `algos.self_rewarding.SelfRewardingConfig`,
Lagrange = `algos.safe_rlhf.LagrangeMultiplier`. The functions `rl.ppo.clipped_policy_loss` and
`clipped_value_loss` take `clip_eps` (old: `clip_coef`) as `algos.policy_loss` does. TRL's names are those of
its GRPOConfig, SFTConfig, DPOConfig and RewardConfig (1.x) and of PPOConfig (0.x).

Two names that look alike and mean different things on purpose: `num_epochs` counts passes over a dataset
(SFT, DPO, reward models), `epochs_per_rollout` counts gradient passes over one freshly sampled rollout (PPO,
GRPO, RLOO). Kept as they are: `steps` (rollouts of the online trainers) beside `max_steps` (an optional cap
of the offline ones, else `num_epochs`), and `batch_size`, whose unit each config states.

The mechanism, `renamed_fields(old="new", ...)`, a class decorator applied over `@dataclass`:

- the constructor accepts an old keyword with a FutureWarning ("`checkpoint_dir` is renamed `output_dir`;
  the old name will be removed"); giving the old and the new name together raises TypeError;
- reading or setting the old attribute works, with the same warning;
- `dataclasses.fields` and `asdict` know only the new names; `dataclasses.replace` accepts old ones;
- `rlsurvey.config_args` adds each old name as a hidden command-line alias that warns (`--epochs` for
  `--epochs-per-rollout`);
- `load_config(cls, source)` rebuilds a config from a saved dict or file (`train_config.json`,
  `trainer_state.json`, a checkpoint directory, `grpo_config.json`, a shipped model's `metrics.json`),
  old names included.

`renamed_kwargs(old="new")` does the same for a function's keyword arguments. Every trainer config also
checks its values when it is made (`__post_init__`, with `rlsurvey.checks.check_fields`), so a bad value
fails where it is written, not when training starts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = ["load_config", "renamed_fields", "renamed_kwargs", "renamed_names", "translate"]

_ATTR = "__renamed_fields__"


def renamed_names(cls) -> dict[str, str]:
    """{old name: new name} of a config class (empty when nothing was renamed)."""
    return dict(getattr(cls, _ATTR, {}))


def _message(owner: str, old: str, new: str) -> str:
    return f"{owner}: `{old}` is renamed `{new}`; the old name will be removed"


def _warn(owner: str, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(_message(owner, old, new), FutureWarning, stacklevel=stacklevel + 1)


def _rename(owner: str, renames: Mapping[str, str], kwargs: dict, stacklevel: int, keep=None) -> dict:
    """kwargs with each old name replaced by its new one (a FutureWarning each). Old and new together raise
    TypeError, unless `keep(new, value)` says the new name's value was filled in, not given (replace)."""
    out = dict(kwargs)
    for old, new in renames.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out and not (keep is not None and keep(new, out[new])):
            raise TypeError(f"{owner} got both `{old}` (the old name) and `{new}`; pass only `{new}`")
        if any(o != old and n == new and o in kwargs for o, n in renames.items()):
            raise TypeError(f"{owner} got two old names of `{new}`; pass only `{new}`")
        _warn(owner, old, new, stacklevel + 1)
        out[new] = value
    return out


def translate(cls, values: Mapping, stacklevel: int = 1) -> dict:
    """A dict of field values with the old names of `cls` replaced by the new ones (a FutureWarning for
    each); TypeError when an old name and its new one are both there. Other keys are left alone."""
    return _rename(cls.__name__, renamed_names(cls), dict(values), stacklevel + 1)


def _filled_by_replace(frame):
    """In `dataclasses.replace(obj, **changes)` every field not in `changes` is filled in from `obj`; a
    function (new name, value) -> whether the value is that filled-in one, or None outside replace."""
    if frame is None or frame.f_globals.get("__name__") != "dataclasses":
        return None
    if frame.f_code.co_name not in ("replace", "_replace") or "obj" not in frame.f_locals:
        return None
    obj = frame.f_locals["obj"]
    return lambda new, value: value is getattr(obj, new, object())


def _old_property(owner: str, old: str, new: str) -> property:
    def get(self):
        _warn(owner, old, new, 2)
        return getattr(self, new)

    def set_(self, value):
        _warn(owner, old, new, 2)
        setattr(self, new, value)

    return property(get, set_, doc=f"Old name of `{new}` (deprecated): {_message(owner, old, new)}.")


def renamed_fields(**renames: str):
    """Class decorator (over `@dataclass`): the fields `new` still answer to their old names, `old="new"`.

    The constructor and `dataclasses.replace` take an old keyword with a FutureWarning; the old attribute
    reads and writes the new field with the same warning; old and new together raise TypeError. The old
    names are no fields: `fields`, `asdict` and the command-line options know only the new ones."""

    def wrap(cls):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"renamed_fields goes over @dataclass, got {cls!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        for old, new in renames.items():
            if new not in fields:
                raise TypeError(f"{cls.__name__}: `{old}` is renamed `{new}`, which is not a field")
            if old in fields:
                raise TypeError(f"{cls.__name__}: the old name `{old}` is still a field")
        merged = {**renamed_names(cls), **renames}  # a subclass keeps its parent's old names
        setattr(cls, _ATTR, merged)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            if any(old in kwargs for old in merged):
                keep = _filled_by_replace(sys._getframe(1))
                kwargs = _rename(type(self).__name__, merged, kwargs, 2 if keep is None else 3, keep)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for old, new in renames.items():
            setattr(cls, old, _old_property(cls.__name__, old, new))
        return cls

    return wrap


def renamed_kwargs(**renames: str):
    """Function decorator: keyword arguments renamed `old="new"` are still accepted, with a FutureWarning;
    both together raise TypeError."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if any(old in kwargs for old in renames):
                kwargs = _rename(fn.__name__, renames, kwargs, 2)
            return fn(*args, **kwargs)

        return inner

    return wrap


def _read(source) -> dict:
    """The config dict inside a saved file or checkpoint directory (see `load_config`)."""
    path = Path(source)
    if path.is_dir():
        for name in ("trainer_state.json", "train_config.json", "grpo_config.json", "metrics.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"{source}: no trainer_state.json, train_config.json or grpo_config.json")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_config(cls, source, **overrides):
    """A `cls` from a saved config: a dict of fields, or a dict / JSON file / checkpoint directory that
    holds one under "config" (train_config.json, trainer_state.json, metrics.json) or is one
    (grpo_config.json). Old field names are accepted with a FutureWarning; JSON lists become tuples where the
    field is a tuple, and dicts become the nested config dataclass where the field is one. `overrides` set
    fields on top (new or old names)."""
    data = dict(source) if isinstance(source, Mapping) else _read(source)
    if isinstance(data.get("config"), Mapping):
        data = dict(data["config"])
    values = translate(cls, data, stacklevel=2)
    values.update(translate(cls, overrides, stacklevel=2))
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        tp = hints.get(name)
        if tp is None:
            continue
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if len(args) == 1 and typing.get_origin(tp) is not tuple else tp
        if isinstance(value, list) and typing.get_origin(base) is tuple:
            values[name] = tuple(value)
        elif isinstance(value, Mapping) and dataclasses.is_dataclass(base):
            values[name] = load_config(base, value)
    return cls(**values)
