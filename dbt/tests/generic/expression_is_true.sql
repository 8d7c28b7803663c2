{#- Every row satisfies a boolean SQL expression (e.g. a cross-column invariant). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
