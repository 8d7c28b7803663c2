{#- Small cross-database helpers (DuckDB locally, BigQuery in the cloud). -#}

{#- An 8-byte float: dbt's type_float() is a 4-byte REAL on DuckDB. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'snds_readmission')()) }}
{%- endmacro %}

{% macro default__type_double() -%}double precision{%- endmacro %}
{% macro duckdb__type_double() -%}double{%- endmacro %}
{% macro bigquery__type_double() -%}float64{%- endmacro %}

{#- A date literal, e.g. the data end date passed as a var. -#}
{% macro date_literal(value) -%}
    cast('{{ value }}' as date)
{%- endmacro %}

{#- The last date covered by the extract (var data_end_date). -#}
{% macro data_start_date() -%}
    {{ date_literal(var('data_start_date')) }}
{%- endmacro %}

{% macro data_end_date() -%}
    {{ date_literal(var('data_end_date')) }}
{%- endmacro %}

{#- Whole days from first_date to second_date (second - first), on dates. -#}
{% macro days_between(first_date, second_date) -%}
    {{ dbt.datediff(first_date, second_date, 'day') }}
{%- endmacro %}

{#- First day of the month of a date, as a date. -#}
{% macro month_start(date_expr) -%}
    cast({{ dbt.date_trunc('month', date_expr) }} as date)
{%- endmacro %}

{#- True when the code starts with the prefix (both strings). -#}
{% macro starts_with(code, prefix) -%}
    {{ return(adapter.dispatch('starts_with', 'snds_readmission')(code, prefix)) }}
{%- endmacro %}

{% macro default__starts_with(code, prefix) -%}
    ({{ code }} like {{ dbt.concat([prefix, "'%'"]) }})
{%- endmacro %}
{% macro duckdb__starts_with(code, prefix) -%}
    starts_with({{ code }}, {{ prefix }})
{%- endmacro %}
{% macro bigquery__starts_with(code, prefix) -%}
    starts_with({{ code }}, {{ prefix }})
{%- endmacro %}
