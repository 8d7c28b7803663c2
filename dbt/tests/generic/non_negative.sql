{#- The column is >= 0 (costs, counts, lengths of stay). Nulls pass. -#}
{% test non_negative(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} < 0
{% endtest %}
