"""Algorithms that fine-tune a language model from rewards or preferences (survey sections 4, 5, 7, 8, 3).

Modules: dpo (the direct preference loss family and its trainer), kto (unpaired losses: KTO and NPO),
rlhf_ppo, rloo, best_of_n, grpo, multiturn (episodes with a tool in the loop, for grpo), self_rewarding.
Import them directly, e.g. `from rlsurvey.algos import dpo`.
"""
