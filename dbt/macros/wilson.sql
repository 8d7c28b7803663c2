{#- 95% Wilson score interval of a proportion x / n (Wilson 1927); null when n = 0. Clamped to
    [0, 1] and to bracket x / n, which it does mathematically but not always in floating point
    (x = 0 or x = n leave a bound 1e-17 on the wrong side).
    bound: 'low' or 'high'. -#}
{% macro wilson_bound(successes, trials, bound, z=1.959963984540054) -%}
    {%- set x = "cast(" ~ successes ~ " as " ~ type_double() ~ ")" -%}
    {%- set n = "cast(" ~ trials ~ " as " ~ type_double() ~ ")" -%}
    {%- set sign = "-" if bound == "low" else "+" -%}
    {%- set clamp = "greatest" if bound == "low" else "least" -%}
    {%- set limit = "0.0" if bound == "low" else "1.0" -%}
    {%- set bracket = "least" if bound == "low" else "greatest" -%}
    case when {{ trials }} > 0 then {{ bracket }}({{ x }} / {{ n }}, {{ clamp }}({{ limit }},
        (
            ({{ x }} / {{ n }}) + {{ z }} * {{ z }} / (2 * {{ n }})
            {{ sign }} {{ z }} * sqrt(
                ({{ x }} / {{ n }}) * (1 - {{ x }} / {{ n }}) / {{ n }}
                + {{ z }} * {{ z }} / (4 * {{ n }} * {{ n }})
            )
        ) / (1 + {{ z }} * {{ z }} / {{ n }})
    )) end
{%- endmacro %}
