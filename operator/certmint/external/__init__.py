"""The shell towards services outside the cluster: certificate authorities certmint signs through.

Like certmint.kube, this layer does I/O and nothing else decides here: it turns a CSR into a
chain by asking an external CA, and turns every failure into a reason the controller can
put into a condition. The pure core (pki, model, policy) never imports it.
"""
