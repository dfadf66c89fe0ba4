"""Page-number pagination: 50 per page unless ``?page_size=`` asks for 1 to 100.

DRF silently ignores a page size it cannot read; here a bad one answers 400 naming the
parameter, so a script asking for ``page_size=500`` learns it gets at most 100. Pages are
integers from 1 (no ``page=last``: the schema says integer, and the links carry the way).

A page past the last one is a 400 naming ``page`` and the last page, like ``page=0``: DRF
answers 404 "Invalid page", which a client cannot tell from a collection that does not exist.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request


class IdFirstPaginator(Paginator):
    """Pages found by id first, then loaded with their related rows.

    Sorting wide joined rows to reach a deep page is what made a list slow (page 50 of 10,000
    policies: every joined row sorted to skip 4,900 of them); sorting only the ids is cheap,
    and loading 100 rows by id is an index lookup. Same page, one query more, constant.

    ``decorate`` (the view's) adds what only the page's rows need (annotations through
    joins): on the count and the ids those joins would cost more than the page itself.
    """

    def __init__(
        self,
        *args: Any,
        decorate: Callable[[QuerySet[Any]], QuerySet[Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.decorate = decorate

    def validate_number(self, number: Any) -> int:
        try:
            return int(super().validate_number(number))
        except EmptyPage as exc:
            last = self.num_pages
            raise EmptyPage(
                f"Page {number} is past the last page, {last} ({self.count} items in all)."
            ) from exc

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        queryset: Any = self.object_list
        ids = list(queryset.values_list("pk", flat=True)[bottom:top])
        rows_of = queryset.filter(pk__in=ids).order_by()  # put in page order below
        if self.decorate is not None:
            rows_of = self.decorate(rows_of)
        rows = {row.pk: row for row in rows_of}
        return Page([rows[pk] for pk in ids if pk in rows], number, self)


class ApiPagination(PageNumberPagination):
    django_paginator_class: Any = IdFirstPaginator
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 100
    invalid_page_message = "{message}"

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        decorate = getattr(view, "decorate", None)
        self.django_paginator_class = partial(IdFirstPaginator, decorate=decorate)
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:  # only an invalid page number raises it here
            raise serializers.ValidationError({self.page_query_param: [str(exc.detail)]}) from exc

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        field = serializers.IntegerField(min_value=1, max_value=self.max_page_size)
        try:
            return int(field.run_validation(raw))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({self.page_size_query_param: exc.detail}) from exc

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        field = serializers.IntegerField(min_value=1)
        try:
            return int(field.run_validation(raw))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({self.page_query_param: exc.detail}) from exc

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 100}
                parameter["description"] = "Items per page (default 50, at most 100)."
            elif parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters
