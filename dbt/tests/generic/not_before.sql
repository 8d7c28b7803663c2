{#- The column (a date) is never before another column of the same row,
    e.g. discharge_date >= admission_date. Nulls pass. -#}
{% test not_before(model, column_name, other_column) %}
select *
from {{ model }}
where {{ column_name }} < {{ other_column }}
{% endtest %}
