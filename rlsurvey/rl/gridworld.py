"""A gridworld MDP built from a text map, as a `gymnasium.Env` that also exposes its exact model.

Survey section 2.1 (arXiv 2412.10400), basic definitions: states, actions, rewards, transition probabilities
and discounting, the finite Markov decision process of Sutton & Barto (2nd ed., ch. 3). Because the whole
model P(s' | s, a) and R(s, a) is available as arrays, the dynamic-programming methods of `rlsurvey.rl.dp`
can solve it exactly, and sampled episodes (the `gymnasium` interface) can be checked against it.

Map characters: `S` start (exactly one), `G` goal (at least one, terminal), `T` trap (terminal), `#` wall,
`.` free floor. Actions: 0 up, 1 right, 2 down, 3 left. With probability `slip` the agent moves to one of the
two perpendicular directions instead (half each), as on an icy floor; bumping into a wall or the edge leaves
it in place. Entering a cell pays that cell's reward (goal, trap or step); goal and trap states are absorbing
with zero reward afterwards, which is how an episodic task is written as an MDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["GridWorld", "DEFAULT_MAP", "ACTIONS", "ARROWS", "run_episode"]

DEFAULT_MAP = """
S...#...
.##.#.#.
...T..#.
.#....T.
...#...G
"""

ACTIONS = ("up", "right", "down", "left")
ARROWS = ("\u2191", "\u2192", "\u2193", "\u2190")
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (d_row, d_col) per action
_CELLS = set("SGT#.")


def _parse(layout: str | Sequence[str]) -> list[str]:
    if isinstance(layout, str):
        rows = [r.strip() for r in layout.strip("\n").splitlines()]
    elif isinstance(layout, Sequence) and all(isinstance(r, str) for r in layout):
        rows = [r.strip() for r in layout]
    else:
        raise TypeError(f"layout must be a string or a list of row strings, got {type(layout).__name__}")
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError("layout must have at least one non-empty row, got an empty map")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"layout must be rectangular (every row the same length), got row lengths {widths}")
    bad = {ch for r in rows for ch in r} - _CELLS
    if bad:
        raise ValueError(f"layout may only use the characters 'S', 'G', 'T', '#', '.', got {sorted(bad)}")
    starts = sum(r.count("S") for r in rows)
    if starts != 1:
        raise ValueError(f"layout must have exactly one start 'S', got {starts}")
    if not any("G" in r for r in rows):
        raise ValueError("layout must have at least one goal 'G', got none")
    return rows


class GridWorld(gym.Env):
    """A text-map gridworld (see the module docstring) with its tabular model.

    | attribute  | shape     | meaning                                            |
    |------------|-----------|----------------------------------------------------|
    | P          | (S, A, S) | P[s, a, s'] = Pr(s' | s, a); each P[s, a] sums to 1 |
    | R          | (S, A)    | R[s, a] = E[r | s, a], expected reward of a step   |
    | terminal   | (S,)      | goal and trap states (absorbing)                   |
    | cells      | S x 2     | (row, col) of state s; walls are not states        |

    layout: the text map; slip: probability in [0, 1) of sliding sideways; step_reward, goal_reward,
    trap_reward: reward for entering a floor, goal or trap cell; max_steps: episodes are truncated after
    this many steps (gymnasium's `truncated`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        layout: str | Sequence[str] = DEFAULT_MAP,
        slip: float = 0.0,
        step_reward: float = 0.0,
        goal_reward: float = 1.0,
        trap_reward: float = -1.0,
        max_steps: int = 100,
        render_mode: str | None = None,
    ):
        self.layout = _parse(layout)
        if not (isinstance(slip, (int, float)) and 0.0 <= slip < 1.0):
            raise ValueError(f"slip must be a probability in [0, 1), got {slip!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        for name, value in (
            ("step_reward", step_reward),
            ("goal_reward", goal_reward),
            ("trap_reward", trap_reward),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        self.slip = float(slip)
        self.rewards = {".": step_reward, "S": step_reward, "G": goal_reward, "T": trap_reward}
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.shape = (len(self.layout), len(self.layout[0]))
        self.cells = [(i, j) for i, row in enumerate(self.layout) for j, ch in enumerate(row) if ch != "#"]
        self.index = {cell: s for s, cell in enumerate(self.cells)}
        kinds = [self.layout[i][j] for i, j in self.cells]
        self.start_state = kinds.index("S")
        self.terminal = np.array([k in "GT" for k in kinds])
        self.goal = np.array([k == "G" for k in kinds])
        self.P, self.R = self._build_model(kinds)
        self.observation_space = gym.spaces.Discrete(len(self.cells))
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.state = self.start_state
        self.steps = 0

    @property
    def n_states(self) -> int:
        return len(self.cells)

    @property
    def n_actions(self) -> int:
        return len(ACTIONS)

    def _neighbour(self, s: int, a: int) -> int:
        i, j = self.cells[s]
        di, dj = _MOVES[a]
        return self.index.get((i + di, j + dj), s)  # a wall or the edge is not in index: stay put

    def _build_model(self, kinds: list[str]) -> tuple[np.ndarray, np.ndarray]:
        S, A = self.n_states, self.n_actions
        P = np.zeros((S, A, S))
        for s in range(S):
            if self.terminal[s]:
                P[s, :, s] = 1.0  # absorbing, and R stays 0 there
                continue
            for a in range(A):
                # Intended move with 1 - slip, each perpendicular one with slip / 2 (a + 1 and a + 3 mod 4).
                for move, p in (
                    (a, 1.0 - self.slip),
                    ((a + 1) % 4, self.slip / 2),
                    ((a + 3) % 4, self.slip / 2),
                ):
                    P[s, a, self._neighbour(s, move)] += p
        entry = np.array([self.rewards[k] for k in kinds], dtype=float)  # reward for entering each state
        R = P @ entry
        R[self.terminal] = 0.0
        return P, R

    def _check_state_array(self, name: str, x, shapes: tuple) -> np.ndarray:
        x = np.asarray(x)
        if x.shape not in shapes:
            raise ValueError(f"{name} must have shape {' or '.join(map(str, shapes))}, got {x.shape}")
        return x

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = self.start_state
        self.steps = 0
        return self.state, {"cell": self.cells[self.state]}

    def step(self, action):
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)) or not 0 <= action < 4:
            raise ValueError(
                f"action must be an int in [0, 4) (0 up, 1 right, 2 down, 3 left), got {action!r}"
            )
        if self.terminal[self.state]:
            raise RuntimeError("the episode has ended (goal or trap reached); call reset() first")
        s = self.state
        s_next = int(self.np_random.choice(self.n_states, p=self.P[s, int(action)]))
        i, j = self.cells[s_next]
        reward = float(self.rewards[self.layout[i][j]])
        self.state, self.steps = s_next, self.steps + 1
        terminated = bool(self.terminal[s_next])
        truncated = not terminated and self.steps >= self.max_steps
        return s_next, reward, terminated, truncated, {"cell": (i, j)}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        fig = self.render_figure(agent=self.state)
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return image

    def render_figure(
        self, values=None, policy=None, agent: int | None = None, ax=None, title: str | None = None
    ):
        """Draw the map, optionally a value per state as a heat map and the policy's greedy action as arrows.

        | name   | shape          | meaning                                                |
        |--------|----------------|--------------------------------------------------------|
        | values | (S,)           | a number per state (V), printed in each cell            |
        | policy | (S, A) or (S,) | action probabilities (argmax drawn) or action indices   |
        | agent  | int            | a state to mark with a dot (the agent's position)       |
        | return | Figure         | the matplotlib figure (a new one unless `ax` is given)  |
        """
        H, W = self.shape
        if ax is None:
            fig, ax = plt.subplots(figsize=(0.75 * W + 1.2, 0.75 * H + 0.4))
        else:
            fig = ax.figure
        grid = np.full((H, W), np.nan)
        if values is not None:
            values = self._check_state_array("values", values, ((self.n_states,),)).astype(float)
            for s, (i, j) in enumerate(self.cells):
                if not self.terminal[s]:  # a terminal state's value is 0 by definition: leave it uncoloured
                    grid[i, j] = values[s]
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="value")
        else:
            ax.imshow(np.zeros((H, W)), cmap="Greys", vmin=0, vmax=1)
        colours = {"#": "#404040", "G": "#009E73", "T": "#D55E00"}
        for i, row in enumerate(self.layout):
            for j, ch in enumerate(row):
                if ch in colours:
                    alpha = 1.0 if ch == "#" else 0.55
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color=colours[ch], alpha=alpha))
                if ch in "SGT":
                    ax.text(j - 0.42, i - 0.42, ch, ha="left", va="top", fontsize=8, weight="bold")
        actions = None
        if policy is not None:
            policy = self._check_state_array(
                "policy", policy, ((self.n_states, self.n_actions), (self.n_states,))
            )
            actions = policy.argmax(axis=1) if policy.ndim == 2 else policy.astype(int)
        for s, (i, j) in enumerate(self.cells):
            # Ink that reads on the cell: black on a blank map or on the light (yellow) end of viridis.
            ink = "black" if values is None or self.terminal[s] or image.norm(values[s]) > 0.6 else "white"
            if actions is not None and not self.terminal[s]:
                di, dj = _MOVES[actions[s]]
                ax.annotate(
                    "",
                    xy=(j + 0.32 * dj, i + 0.32 * di),
                    xytext=(j - 0.22 * dj, i - 0.22 * di),
                    arrowprops={"arrowstyle": "->", "color": ink, "lw": 1.8},
                )
            if values is not None and not self.terminal[s]:
                y = i + (0.3 if actions is not None else 0.0)
                ax.text(j, y, f"{values[s]:.2f}", ha="center", va="center", fontsize=7, color=ink)
        if agent is not None:
            i, j = self.cells[int(agent)]
            ax.plot(j, i, "o", color="#E69F00", markersize=12)
        ax.set_xticks(np.arange(-0.5, W, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, H, 1), minor=True)
        ax.grid(which="minor", color="white", lw=1)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        if title:
            ax.set_title(title)
        return fig


def run_episode(env: GridWorld, policy, seed: int | None = None, max_steps: int | None = None):
    """Follow `policy` in `env` from its start until termination or truncation.

    | name   | shape          | meaning                                                         |
    |--------|----------------|-----------------------------------------------------------------|
    | policy | (S, A) or (S,) | action probabilities (sampled) or deterministic action indices  |
    | return | tuple          | (states (T+1,), actions (T,), rewards (T,), terminated: bool)   |
    """
    policy = env._check_state_array("policy", policy, ((env.n_states, env.n_actions), (env.n_states,)))
    # The policy's generator is a child of `seed`, not `seed` itself: gymnasium seeds the environment with
    # the same SeedSequence, and identical streams would correlate each action with the slip that follows.
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    state, _ = env.reset(seed=seed)
    states, actions, rewards = [state], [], []
    limit = max_steps or env.max_steps
    for _ in range(limit):
        if policy.ndim == 2:
            action = int(rng.choice(env.n_actions, p=policy[state]))
        else:
            action = int(policy[state])
        state, reward, terminated, truncated, _ = env.step(action)
        states.append(state)
        actions.append(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(states), np.array(actions), np.array(rewards), bool(env.terminal[state])
