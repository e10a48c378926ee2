"""Use cases: the only code that combines the database, secrets, clock and pure rules.

Each public function is one use case in one transaction. It takes the `Context`
and the `Principal` asking, checks access first (404 for what the caller may not
see), and returns plain frozen views — never ORM rows.
"""
