"""Recommendations from a trained run, in a few lines.

    python examples/serve.py [CONFIG]

Loads the run's final checkpoint once (run `di run` or examples/python_api.py
with the same CONFIG first), then recommends for a known user and for a
history the dataset has never seen.
"""

import sys

import deepinterest as di

model = di.load_recommender(sys.argv[1] if len(sys.argv) > 1 else None)

user = model.dataset.users[0]
print(f"user {user.id}, last bought: {[model.dataset.items[i].id for i in user.items[-3:]]}")
for rec in model.recommend(user.id, k=5):
    print(f"{rec.rank:>2}  {rec.score:7.3f}  {rec.item:<10} {rec.title[:60]}")

# A new visitor who looked at two items: any list of known item ids, oldest first.
history = [model.dataset.items[3].id, model.dataset.items[7].id]
for recs in model.recommend_histories([history], k=3):
    print("for", history, "->", [rec.item for rec in recs])
