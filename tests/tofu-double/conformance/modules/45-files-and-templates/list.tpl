%{ for n in names ~}
- ${upper(n)}
%{ endfor ~}
end of ${title}
