{#- Custom schemas are used as is (staging, intermediate, marts, ref), not prefixed by the
    target schema: the same names on DuckDB and as BigQuery datasets. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
