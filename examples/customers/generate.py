"""Write the example's tables: customers.csv (labelled, some labels missing) and
new_customers.csv (new rows to predict, no labels).

The customers are made up, from a seeded generator, so that the tasks can be learnt from the
features: the churn flag depends on tenure, visits and support calls; the plan on income and
household; the monthly spend on the plan, income and region. A share of each label is left
empty, as in real records where not every outcome is known yet. Run it again to get the same
files:

    python examples/customers/generate.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
ROWS = 2000
NEW_ROWS = 20
PLANS = np.array(["basic", "plus", "premium"])


def customers(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` customers with every feature and label."""
    age = rng.integers(18, 80, rows).astype(float)
    income = np.round(rng.lognormal(np.log(45), 0.35, rows), 1)  # thousand per year
    household = rng.integers(1, 6, rows)
    tenure = rng.integers(1, 72, rows)  # months
    visits = rng.poisson(8, rows)  # per month
    calls = rng.poisson(1.0 + 2.0 * (visits < 4), rows)  # support calls, last quarter
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.3, 0.3, 0.25, 0.15])
    channel = rng.choice(["web", "store", "partner"], rows, p=[0.5, 0.35, 0.15])
    score = 0.04 * (income - 45) + 0.35 * (household - 2.5) + rng.normal(0, 0.5, rows)
    plan = PLANS[np.digitize(score, [-0.45, 0.55])]
    base = {"basic": 25.0, "plus": 45.0, "premium": 80.0}
    spend = (
        np.vectorize(base.get)(plan)
        + 0.3 * income
        + 6.0 * (region == "north")
        + rng.normal(0, 4, rows)
    )
    logit = -0.06 * tenure + 0.5 * calls - 0.12 * visits + 0.8 * (channel == "partner") + 0.9
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    age[rng.random(rows) < 0.03] = np.nan  # a few ages unknown: filled with the mean
    return pd.DataFrame(
        {
            "customer_id": [f"C{10000 + i}" for i in range(rows)],
            "age": age,
            "income": income,
            "household": household,
            "tenure_months": tenure,
            "monthly_visits": visits,
            "support_calls": calls,
            "region": region,
            "channel": channel,
            "churned": churned,
            "plan": plan,
            "monthly_spend": np.round(spend, 2),
        }
    )


def main(folder: Path = HERE) -> None:
    """Write both tables into ``folder``."""
    rng = np.random.default_rng(7)
    table = customers(ROWS + NEW_ROWS, rng)
    labelled, new = table.iloc[:ROWS].copy(), table.iloc[ROWS:]
    labelled.loc[rng.random(ROWS) < 0.15, "churned"] = None  # outcome not known yet
    labelled.loc[rng.random(ROWS) < 0.25, "plan"] = None
    labelled.loc[rng.random(ROWS) < 0.35, "monthly_spend"] = np.nan
    labelled.to_csv(folder / "customers.csv", index=False)
    new.drop(columns=["churned", "plan", "monthly_spend"]).to_csv(
        folder / "new_customers.csv", index=False
    )


if __name__ == "__main__":
    main()
