"""The label analysis: co-occurrence and Apriori rules, sampling weights, figures."""
