"""The REST input check, for GraphQL: text no field can store is refused before anything runs.

A GraphQL document can spell a NUL or a lone surrogate inside a string literal (`members(q: "\\ud800")`),
which JSON decoding of the request body never sees, and variables arrive decoded. Both are checked here with
`app.api.input_checks.unstorable`, and refused as one `validation_error` (status 422) naming each argument
or variable, as REST does, instead of failing deep in a resolver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from app.api.input_checks import unstorable, unstorable_in
from app.core.errors import Unprocessable


class _StringLiterals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[StringValueNode, str, str]] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        bad = unstorable(node.value)
        if bad:
            self.found.append((node, *bad))


class RefuseUnstorableText(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.pre_execution_errors is None:
            literals = _StringLiterals()
            visit(context.graphql_document, literals)
            problems = [{"field": f"query:{node.loc.start if node.loc else 0}", "message": message, "type": kind}
                        for node, message, kind in literals.found]
            problems += [{"field": ".".join(str(part) for part in loc), "message": message, "type": kind}
                         for loc, message, kind in unstorable_in(context.variables or {}, ("variables",))]
            if problems:
                error = Unprocessable(f"{problems[0]['field']}: {problems[0]['message']}", code="validation_error",
                                      errors=problems)
                # Set before validation runs: Strawberry then skips it and answers with this error alone.
                context.pre_execution_errors = [GraphQLError(error.detail, nodes=[n for n, *_ in literals.found],
                                                             original_error=error)]
        yield
