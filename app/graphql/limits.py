"""Limits Strawberry's own extensions leave open, and how GraphQL errors are logged.

Strawberry's depth limiter does not count introspection fields (`__schema`, `__type`), so a deeply nested
introspection query passed any depth limit; `IntrospectionDepthLimit` bounds those subtrees on their own
(deep enough for GraphiQL's introspection query, no deeper). `CareLoopSchema` logs what the client got wrong
(syntax, validation, an AppError such as 403 or 422) at INFO without a traceback, and keeps ERROR with the
traceback for what went wrong on our side.
"""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
)
from strawberry.extensions import AddValidationRules

from app.core.errors import AppError

log = logging.getLogger("careloop.graphql")

# The standard introspection query (GraphiQL's, graphql-core's) is 15 deep: `ofType` nested under
# __schema.types.fields.type. A little room for clients that ask one or two levels more; no more.
INTROSPECTION_MAX_DEPTH = 18


def _depth(selections: SelectionSetNode | None, context: ValidationContext, inside: bool, seen: set[str]) -> int:
    """The deepest introspection field chain below `selections` (fields outside introspection count 0)."""
    if selections is None:
        return 0
    deepest = 0
    for node in selections.selections:
        if isinstance(node, FieldNode):
            introspection = inside or node.name.value.startswith("__")
            below = _depth(node.selection_set, context, introspection, seen)
            deepest = max(deepest, below + 1 if introspection else below)
        elif isinstance(node, InlineFragmentNode):
            deepest = max(deepest, _depth(node.selection_set, context, inside, seen))
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
            fragment = context.get_fragment(node.name.value)
            if fragment is not None:
                deepest = max(deepest, _depth(fragment.selection_set, context, inside, seen | {node.name.value}))
    return deepest


def introspection_depth_rule(max_depth: int) -> type[ASTValidationRule]:
    class IntrospectionDepth(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            depth = _depth(node.selection_set, self.context, False, set())
            if depth > max_depth:
                self.report_error(GraphQLError(
                    f"introspection nested {depth} deep exceeds the limit of {max_depth}", [node]))

    return IntrospectionDepth


class IntrospectionDepthLimit(AddValidationRules):
    def __init__(self, max_depth: int = INTROSPECTION_MAX_DEPTH) -> None:
        super().__init__([introspection_depth_rule(max_depth)])


def _client_error(error: GraphQLError) -> bool:
    original = error.original_error
    return original is None or (isinstance(original, AppError) and original.status < 500)


class CareLoopSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            if _client_error(error):
                code = getattr(error.original_error, "code", "graphql_validation")
                log.info("graphql client error (%s): %s", code, error.message)
            else:
                log.error("graphql error: %s", error.message, exc_info=error.original_error)
