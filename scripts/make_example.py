"""Regenerate the example activations shipped in src/repmatch/data/.

Two multilayer perceptrons (64-32 ReLU hidden units) are trained with scikit-learn on the digits
dataset from seeds 0 and 1; their hidden activations on all 1,797 digits are saved, one .npz per
network with one array per layer ("hidden1", "hidden2"). Run: python scripts/make_example.py
"""

import os
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

out_dir = os.path.join(os.path.dirname(__file__), "..", "src", "repmatch", "data")
digits = load_digits()
X = digits.data / 16.0
for seed in (0, 1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(64, 32), activation="relu", max_iter=300, random_state=seed)
        clf.fit(X[:1500], digits.target[:1500])
    print(f"seed {seed}: held-out accuracy {clf.score(X[1500:], digits.target[1500:]):.3f}")
    h1 = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    h2 = np.maximum(h1 @ clf.coefs_[1] + clf.intercepts_[1], 0)
    np.savez_compressed(
        os.path.join(out_dir, f"example_seed{seed}.npz"), hidden1=h1.astype(np.float32), hidden2=h2.astype(np.float32)
    )
