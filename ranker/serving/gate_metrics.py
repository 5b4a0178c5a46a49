"""The validation gate's metric names and defaults (light: the CLI imports them for --help)."""
JUDGED_NDCG = "judged-ndcg@10"  # nDCG@10 on judged lists (true grades)
IPS_NDCG = "ips-ndcg@10"  # IPS-weighted click nDCG@10 on the eval split's logged lists
CLICK_LOG_LOSS = "click-log-loss"  # log loss of σ(relevance) on the eval split's clicks; lower is better
GATE_METRICS = (JUDGED_NDCG, IPS_NDCG, CLICK_LOG_LOSS)
DEFAULT_MIN_NDCG = 0.5
DEFAULT_MAX_REGRESSION = 0.01
