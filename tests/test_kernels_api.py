"""The public surface of rlsurvey.kernels on the PyTorch reference path: fast checks that need no Triton."""

import torch

import rlsurvey.kernels as K


def test_reference_paths_match_naive_and_are_differentiable():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 50, requires_grad=True)
    t = torch.randint(0, 50, (2, 3))
    t[0, 1] = -100
    lp = K.token_logprobs(x, t, temperature=0.5, backend="torch")
    assert lp.shape == (2, 3) and lp[0, 1] == 0 and (lp <= 0).all()
    lp.sum().backward()
    x2 = x.detach().clone().requires_grad_()
    K.token_logprobs_naive(x2, t, temperature=0.5).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=0)

    h = K.token_entropy(x, backend="torch")
    torch.testing.assert_close(h, K.token_entropy_naive(x), atol=1e-5, rtol=0)

    hid = torch.randn(6, 4, requires_grad=True)
    w = torch.randn(50, 4, requires_grad=True)
    tt = torch.randint(0, 50, (6,))
    out = K.fused_linear_token_logprobs(hid, w, tt, backend="torch")
    torch.testing.assert_close(out, K.fused_linear_token_logprobs_naive(hid, w, tt), atol=1e-5, rtol=0)
    out.sum().backward()
    assert hid.grad is not None and w.grad is not None

    r = torch.randn(2, 5, requires_grad=True)
    v = torch.randn(2, 5)
    m = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    adv, ret = K.gae(r, v, m, gamma=1.0, lam=1.0, backend="torch")
    # gamma = lam = 1: A_t = sum of rewards from t on (over valid steps) minus V_t
    torch.testing.assert_close(adv[0, 0], r[0, :3].sum() - v[0, 0])
    assert adv[0, 3] == 0 and ret[1, 0] == 0
    adv.sum().backward()
    assert r.grad is not None
