"""Claims of Zhang et al. (ICLR 2018), "mixup: Beyond Empirical Risk Minimization", reproduced
on data this machine can reach: ``tabular`` (section 3.6, Table 4), ``gan`` (section 3.7,
Figure 5) and ``toy_boundary`` (Figure 1b). Each is a ``python -m benchmarks.paper.NAME`` command
that writes its results under benchmarks/results/.
"""
