{#- No look-ahead: the column (the latest date a feature used) is never after the reference
    date of the row (the index discharge date). Nulls pass. -#}
{% test not_after(model, column_name, reference_column) %}
select *
from {{ model }}
where {{ column_name }} > {{ reference_column }}
{% endtest %}
