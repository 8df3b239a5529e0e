"""Classic reinforcement learning (survey section 2.1): bandits, a gridworld MDP, dynamic programming,
returns and GAE, REINFORCE, actor-critic and PPO on gymnasium environments.

Import the modules directly, e.g. `from rlsurvey.rl import bandits, ppo`.
"""
