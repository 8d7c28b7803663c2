{#- The column is a proportion within [0, 1]. Nulls pass (suppressed cells). -#}
{% test is_rate(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} < 0 or {{ column_name }} > 1
{% endtest %}
