{#- BigQuery-only physical layout of the fact tables: monthly partitions (a date range beyond
    ~11 years would exceed the 4,000-partition limit with daily ones) and clustering. Other
    adapters get none (dbt-duckdb gives `partition_by` another meaning). -#}

{% macro bq_partition_by(field, granularity='month') -%}
    {%- if target.type == 'bigquery' -%}
        {{ return({'field': field, 'data_type': 'date', 'granularity': granularity}) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}

{% macro bq_cluster_by(columns) -%}
    {%- if target.type == 'bigquery' -%}
        {{ return(columns) }}
    {%- else -%}
        {{ return(none) }}
    {%- endif -%}
{%- endmacro %}
