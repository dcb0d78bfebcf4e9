"""A small multilayer perceptron in numpy: trained offline, evaluated at decision time.

The learned window policy runs inside the draft client's loop and the simulator's, where a
forward pass of a few thousand weights must cost microseconds and pull in no torch. Weights
are stored as JSON (numbers and names only), so loading a file from someone else runs no
code.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Mlp:
    """tanh hidden layers, a linear output; inputs standardised with the training set's
    mean and spread, which travel with the weights."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    input_mean: np.ndarray
    input_scale: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = (features - self.input_mean) / self.input_scale
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = np.tanh(x @ weight + bias)
        return x @ self.weights[-1] + self.biases[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": [w.tolist() for w in self.weights],
            "biases": [b.tolist() for b in self.biases],
            "input_mean": self.input_mean.tolist(),
            "input_scale": self.input_scale.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mlp:
        weights = [np.asarray(w, dtype=np.float64) for w in data["weights"]]
        biases = [np.asarray(b, dtype=np.float64) for b in data["biases"]]
        for weight, bias in zip(weights, biases, strict=True):
            if weight.ndim != 2 or bias.shape != (weight.shape[1],):
                raise ValueError("layer shapes do not fit together")
        for before, after in itertools.pairwise(weights):
            if before.shape[1] != after.shape[0]:
                raise ValueError("layer shapes do not fit together")
        mean = np.asarray(data["input_mean"], dtype=np.float64)
        scale = np.asarray(data["input_scale"], dtype=np.float64)
        if mean.shape != scale.shape or mean.shape != (weights[0].shape[0],):
            raise ValueError("input normalisation does not fit the first layer")
        return cls(weights, biases, mean, scale)


def load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc


def train_mlp(
    inputs: np.ndarray,
    targets: np.ndarray,
    hidden: tuple[int, ...] = (32, 32),
    epochs: int = 300,
    batch: int = 256,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> tuple[Mlp, list[float]]:
    """Fit by mean squared error with Adam; returns the network and the loss per epoch."""
    rng = np.random.default_rng(seed)
    mean = inputs.mean(axis=0)
    scale = np.where(inputs.std(axis=0) > 1e-9, inputs.std(axis=0), 1.0)
    x_all = (inputs - mean) / scale
    sizes = [inputs.shape[1], *hidden, targets.shape[1]]
    weights = [
        rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, n_out))
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    biases = [np.zeros(n_out) for n_out in sizes[1:]]
    params = weights + biases
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x_all))
        total = 0.0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            activations = [x_all[rows]]
            for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
                activations.append(np.tanh(activations[-1] @ weight + bias))
            output = activations[-1] @ weights[-1] + biases[-1]
            error = output - targets[rows]
            total += float((error**2).sum())
            delta = 2.0 * error / len(rows)
            grads_w, grads_b = [], []
            for layer in range(len(weights) - 1, -1, -1):
                grads_w.append(activations[layer].T @ delta)
                grads_b.append(delta.sum(axis=0))
                if layer:
                    delta = (delta @ weights[layer].T) * (1.0 - activations[layer] ** 2)
            grads = grads_w[::-1] + grads_b[::-1]
            step += 1
            for p, g, m, v in zip(params, grads, moments, squares, strict=True):
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * g * g
                p -= (
                    learning_rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)
                )
        losses.append(total / targets.size)
    return Mlp(weights, biases, mean, scale), losses
