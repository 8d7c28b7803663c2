{#- LACE index (van Walraven et al., CMAJ 2010): Length of stay, Acuity (emergent admission),
    Comorbidity (Charlson), Emergency department visits in the previous 6 months. -#}
{% macro lace_score(length_of_stay, emergency, charlson, ed_visits_6m) -%}
    (
        case
            when {{ length_of_stay }} < 1 then 0
            when {{ length_of_stay }} <= 3 then {{ length_of_stay }}
            when {{ length_of_stay }} <= 6 then 4
            when {{ length_of_stay }} <= 13 then 5
            else 7
        end
        + case when {{ emergency }} then 3 else 0 end
        + case when {{ charlson }} >= 4 then 5 else {{ charlson }} end
        + case when {{ ed_visits_6m }} >= 4 then 4 else {{ ed_visits_6m }} end
    )
{%- endmacro %}
